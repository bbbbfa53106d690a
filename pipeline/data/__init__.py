"""Datasets: readers for ICDAR2015 / IIIT5K formats, the validation splits, synthetic data."""
