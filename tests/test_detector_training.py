"""Detector training on real IC15 data: a time limit stops cleanly (validated, saved), and a
stopped run resumes where it was."""

from __future__ import annotations

from pathlib import Path

import cv2
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


def test_the_ablation_baseline_has_no_clip_side_modules_and_trains_on_a_few_shot_subset(
    tmp_path: Path,
) -> None:
    """`--variant cr50_cpu_plain --train-images N` (issue 13, 5b): the DB head sits on the FPN
    alone (no prompt, BSM, VPG or ILM score map, no auxiliary loss), the run reads only its
    evenly spread N training images, and its checkpoint loads back as the same variant."""
    from pipeline.model.checkpoint import build_detector
    from pipeline.train.detection_data import AugmentConfig, DetectionDataset

    data = DetectionDataset(str(IC15), AugmentConfig(crop=128), train_images=80)
    numbers = [int(p.stem.split("_")[1]) for p in data.images]
    assert numbers == list(range(1, 801, 10))  # every 10th of img_1-800, never tune or val
    with pytest.raises(ValueError, match="train_images"):
        DetectionDataset(str(IC15), AugmentConfig(crop=128), train_images=801)

    torch.set_num_threads(1)
    cfg = DetectorTrainConfig(
        ic15_root=str(IC15), out_dir=str(tmp_path), variant="cr50_cpu_plain", steps=2,
        batch_size=2, crop=128, val_images=2, workers=0, threads=1, train_images=8,
    )
    assert train_detector(cfg)["step"] == 2
    saved = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=False)
    clip_side = ("text_encoder.", "prompt.", "bsm.", "vpg.")
    assert not any(k.startswith(clip_side) for k in saved["model"])
    model = build_detector(saved["config"], saved["model"], "last.pt")
    assert model.config.clip_modules is False
    out = model.eval()(torch.zeros(1, 3, 128, 128))
    assert out.score_map is None and out.head.prob.shape[-2:] == (128, 128)
    with pytest.raises(ValueError, match="no CLIP-side modules"):
        model.text_embedding("a custom prompt")

    # exported, it spots like any weights file (detection only), and refuses custom prompts
    from pipeline.errors import ClipSpotError
    from pipeline.spotter import Spotter
    from services.cli.main import main

    weights = tmp_path / "plain.pt"
    assert main(["export", "--detector", str(tmp_path / "last.pt"), "--out", str(weights)]) == 0
    spotter = Spotter.load(weights)
    image = cv2.cvtColor(cv2.imread(str(IC15 / "images" / "img_901.jpg")), cv2.COLOR_BGR2RGB)
    assert len(spotter.spot([image])) == 1  # one list of words for the one image
    with pytest.raises(ClipSpotError, match="no CLIP-side modules"):
        spotter.encode_prompt("a custom prompt")
