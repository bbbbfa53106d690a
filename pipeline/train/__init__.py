"""Training loops (CPU-first, resumable); imported by the `clipspot train` command."""
