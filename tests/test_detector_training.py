"""Detector training on real IC15 data: a time limit stops cleanly (validated, saved), and a
stopped run resumes where it was."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from shared_data import SHARED_DATA

from pipeline.train.detector_training import DetectorTrainConfig, train_detector

IC15 = SHARED_DATA / "ic15_train"
pytestmark = pytest.mark.skipif(not IC15.is_dir(), reason="needs ../shared/data")


def test_a_time_limit_stops_validates_and_saves_then_resumes(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = DetectorTrainConfig(
        ic15_root=str(IC15), out_dir=str(tmp_path), variant="cr50_tiny", steps=1000,
        batch_size=2, crop=128, val_images=3, workers=0, threads=1, max_minutes=0.0,
    )
    first = train_detector(cfg)
    assert first["step"] == 1  # out of time after the first step, not after 1000
    best = torch.load(tmp_path / "best.pt", map_location="cpu", weights_only=False)
    last = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=False)
    assert best["step"] == last["step"] == 1 and best["train_config"]["max_minutes"] == 0.0
    assert (tmp_path / "step_1.pt").exists()  # every validated step is kept
    second = train_detector(cfg)
    assert second["step"] == 2  # resumed from last.pt
