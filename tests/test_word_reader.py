"""Word readers: each reads a rendered word, the reader is part of the model's checksum, a bad
name fails at start-up in one line, and the per-reader calibration and cut carried by the
weights are what the Spotter applies.

Real components throughout: the shipped weights (our CTC reader), PP-OCRv6 rec small from the
installed rapidocr wheel (onnxruntime), real DejaVu glyphs, real IC15 tune images.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont
from shared_data import SHARED_DATA

from pipeline.data.synth_text import find_fonts
from pipeline.errors import ClipSpotError
from pipeline.model.calibration import ReaderCalibration
from pipeline.model.checkpoint import read_checkpoint
from pipeline.model.ppocr_reader import PPOCRv6Reader, bucket_width
from pipeline.model.word_reader import OWN_READER, PPOCR_READER, read_words
from pipeline.spotter import Spotter, default_weights_path

IC15 = SHARED_DATA / "ic15_train"
IC15_TUNE_IMAGE = IC15 / "images" / "img_801.jpg"

pytestmark = pytest.mark.skipif(not IC15.is_dir(), reason="needs ../shared/data")


@pytest.fixture(autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def ppocr() -> PPOCRv6Reader:
    return PPOCRv6Reader(threads=1)


def rendered_word(text: str, height: int = 64) -> np.ndarray:
    """Dark text on a light card, DejaVu Sans Bold (or the first system face): RGB uint8."""
    face = next((f for f in find_fonts() if f.path and "Bold" in f.path.name), find_fonts()[0])
    font = ImageFont.truetype(str(face.path), height) if face.path else ImageFont.load_default()
    left, top, right, bottom = font.getbbox(text)
    pad = height // 4
    card = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), (235, 230, 220))
    ImageDraw.Draw(card).text((pad - left, pad - top), text, font=font, fill=(20, 25, 40))
    return np.asarray(card)


@pytest.mark.parametrize("reader_name", [OWN_READER, PPOCR_READER])
def test_each_reader_reads_a_rendered_word(reader_name: str) -> None:
    spotter = Spotter.load(reader=reader_name, threads=1)
    crop = rendered_word("STREET")
    polygon = np.float32([[0, 0], [crop.shape[1], 0], [crop.shape[1], crop.shape[0]],
                          [0, crop.shape[0]]])
    (reading,) = spotter.read(crop, [polygon])
    assert reading.text == "STREET"
    assert 0.0 <= reading.confidence <= 1.0


def test_ppocr_reads_only_our_characters_and_alone_as_in_a_batch(ppocr: PPOCRv6Reader) -> None:
    words = ["Exit", "OPEN", "2025", "Caf3"]
    crops = [rendered_word(w, height=40) for w in words]
    together = read_words(ppocr, crops)
    alone = [read_words(ppocr, [c])[0] for c in crops]
    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.text for r in together][:3] == words[:3]
    assert all(c in ppocr.charset.chars for r in together for c in r.text)
    # Per-step log-probabilities are over our charset and renormalised.
    (steps,) = ppocr.step_log_probs([crops[0]])
    assert steps.shape[1] == ppocr.charset.num_classes
    assert np.allclose(np.exp(steps).sum(-1), 1.0, atol=1e-4)
    # A crop's padded width depends only on itself (so batch partners cannot change it).
    assert bucket_width(48, 100) == (100, 320) and bucket_width(48, 400) == (400, 448)


def test_the_reader_is_part_of_the_checksum() -> None:
    ours = Spotter.load(reader=OWN_READER)
    theirs = Spotter.load(reader=PPOCR_READER)
    assert ours.weights_checksum == theirs.weights_checksum
    assert ours.checksum != theirs.checksum
    assert "rapidocr 3.10.0" in theirs.reader.identity and "sha256" in theirs.reader.identity


def test_an_unknown_reader_fails_at_start_up_in_one_line(tmp_path: Path) -> None:
    for command in (["spot", str(IC15_TUNE_IMAGE)], ["serve", "--port", "0"]):
        done = subprocess.run(
            [sys.executable, "-m", "services.cli.main", *command, "--reader", "tesseract"],
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 2, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "unknown reader 'tesseract'" in lines[0]
        assert "clipspot-ctc, ppocrv6" in lines[0] and "Traceback" not in done.stderr
    with pytest.raises(ClipSpotError, match="unknown reader"):
        Spotter.load(reader="tesseract")


def test_the_per_reader_cut_in_the_weights_is_the_one_spot_applies(tmp_path: Path) -> None:
    data = read_checkpoint(default_weights_path())
    coef = (-2.0, 2.0, 1.0, 0.5, -0.2, -0.3)
    data["readers"] = {
        OWN_READER: ReaderCalibration(coef, 0.25, "test").to_dict(),
        PPOCR_READER: ReaderCalibration(coef, 0.6, "test").to_dict(),
    }
    data["default_reader"] = PPOCR_READER
    path = tmp_path / "calibrated.pt"
    torch.save(data, path)
    image = cv2.cvtColor(cv2.imread(str(IC15_TUNE_IMAGE)), cv2.COLOR_BGR2RGB)

    default = Spotter.load(path)
    assert default.reader.name == PPOCR_READER and default.min_word_score == 0.6
    ours = Spotter.load(path, reader=OWN_READER)
    assert ours.min_word_score == 0.25
    for spotter in (default, ours):
        (found,) = spotter.detect([image])
        readings = spotter.read(image, [d.polygon for d in found])
        scores = [spotter.word_score(d.score, r) for d, r in zip(found, readings, strict=True)]
        (words,) = spotter.spot([image])
        expected = sum(
            s >= spotter.min_word_score and any(c.isalnum() for c in r.text)
            for s, r in zip(scores, readings, strict=True)
        )
        assert len(words) == expected > 0
        assert min(w.score for w in words) >= spotter.min_word_score
        assert any(s < spotter.min_word_score for s in scores)  # the cut did drop words


def test_calibrate_writes_weights_that_prefer_the_better_reader(tmp_path: Path) -> None:
    out, report = tmp_path / "cal.pt", tmp_path / "cal.json"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "calibrate", "--ic15", str(IC15),
         "--images", "801-808", "--out", str(out), "--report", str(report), "--threads", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    data = read_checkpoint(out)
    assert set(data["readers"]) == {OWN_READER, PPOCR_READER}
    spotter = Spotter.load(out)
    assert spotter.reader.name == data["default_reader"]
    assert spotter.min_word_score == data["readers"][spotter.reader.name]["min_word_score"]
    bad = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "calibrate", "--ic15", str(IC15),
         "--images", "901-1000", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and "validation" in bad.stderr
