"""`clipspot export`: checkpoints -> one weights file whose operating point the Spotter uses.

Real CLI entry, real (tiny, untrained) networks, a real IC15 image.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch
from shared_data import SHARED_DATA

from pipeline.model.checkpoint import detector_config_to_dict
from pipeline.model.detector import FastTCMDetector
from pipeline.model.recognizer import Recognizer, RecognizerConfig, recognizer_checkpoint
from pipeline.model.variants import cr50_tiny
from pipeline.spotter import Spotter
from services.cli.main import main

TINY_REC = RecognizerConfig(stem_width=32, planes=(16, 32, 48, 64), blocks=(1, 1, 1, 1), hidden=64)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt")
    detector = FastTCMDetector(cr50_tiny())
    torch.save(
        {
            "kind": "detector",
            "config": detector_config_to_dict(detector.config),
            "model": detector.state_dict(),
            "step": 7,
            "best_hmean": 0.0,
        },
        folder / "det.pt",
    )
    torch.save(recognizer_checkpoint(Recognizer(TINY_REC), 5, {}), folder / "rec.pt")
    return folder / "det.pt", folder / "rec.pt"


def test_the_exported_operating_point_is_what_the_spotter_uses(checkpoints, tmp_path) -> None:
    det, rec = checkpoints
    out = tmp_path / "w.pt"
    flags = ["--box-threshold", "0.65", "--min-word-score", "0.4", "--input-scale", "1.5"]
    code = main(
        ["export", "--detector", str(det), "--recognizer", str(rec), "--out", str(out), *flags,
         "--lexicon-margin", "2.5"]
    )  # fmt: skip
    assert code == 0 and out.is_file()
    spotter = Spotter.load(out)
    post = spotter.postprocess
    assert (post.box_threshold, post.min_word_score, post.input_scale) == (0.65, 0.4, 1.5)
    assert spotter.lexicon is not None and spotter.lexicon.config.margin == 2.5
    assert Spotter.load(out, lexicon=False).lexicon is None
    assert Spotter.load(out, input_scale=1.0).postprocess.input_scale == 1.0
    if SHARED_DATA.is_dir():  # the file spots a real image end to end
        image = cv2.imread(str(SHARED_DATA / "ic15_train" / "images" / "img_901.jpg"))
        words = spotter.spot([cv2.cvtColor(image, cv2.COLOR_BGR2RGB)])
        assert len(words) == 1


def test_defaults_read_without_a_dictionary_at_scale_one(checkpoints, tmp_path) -> None:
    det, rec = checkpoints
    out = tmp_path / "plain.pt"
    args = ["export", "--detector", str(det), "--recognizer", str(rec), "--out", str(out)]
    assert main(args) == 0
    spotter = Spotter.load(out)
    assert spotter.lexicon is None and spotter.postprocess.input_scale == 1.0


def test_export_refuses_a_recognizer_as_detector(checkpoints, tmp_path, capsys) -> None:
    _, rec = checkpoints
    code = main(["export", "--detector", str(rec), "--out", str(tmp_path / "x.pt")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a detector training checkpoint" in err
