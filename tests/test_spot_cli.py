"""`clipspot spot` end to end: image, folder and video in, JSON Lines out; bad input -> one line.

Runs the real CLI entry (`services.cli.main.main`) with real weights: the shipped default when
present, else a freshly packed untrained `cr50_tiny` (same file format, same code path; it finds
few or no words, so the format checks hold either way).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import cv2
import pytest
import torch

from pipeline.model.checkpoint import pack_weights
from pipeline.model.detector import FastTCMDetector
from pipeline.model.variants import cr50_tiny
from pipeline.spotter import default_weights_path
from services.cli.main import main
from tests.test_decode import IMAGES, VIDEO, cut_clip

FAST = ["--max-side", "320", "--threads", "1"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    shipped = default_weights_path()
    if shipped.is_file():
        return str(shipped)
    torch.manual_seed(0)
    detector = FastTCMDetector(cr50_tiny()).eval()
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    pack_weights(detector, None, {}, (0.48, 0.46, 0.41), (0.27, 0.26, 0.28), path)
    return str(path)


def spot(args: list[str], capsys) -> tuple[int, list[dict], str]:
    code = main(["spot", *args])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    return code, lines, captured.err


def check_line(line: dict, video: bool) -> None:
    assert set(line) == {"source", "frame", "pts", "instances"}
    assert isinstance(line["frame"], int)
    for inst in line["instances"]:
        assert len(inst["polygon"]) >= 4 and all(len(p) == 2 for p in inst["polygon"])
        assert isinstance(inst["text"], str) and 0.0 <= inst["score"] <= 1.0
        assert isinstance(inst["track_id"], int) if video else inst["track_id"] is None


def test_spot_an_image_with_render(weights, tmp_path, capsys):
    image = IMAGES / "img_901.jpg"
    rendered = tmp_path / "annotated.jpg"
    code, lines, err = spot(
        [str(image), "--weights", weights, "--render", str(rendered), *FAST], capsys
    )
    assert code == 0
    assert len(lines) == 1 and lines[0]["source"] == str(image)
    assert (lines[0]["frame"], lines[0]["pts"]) == (0, None)
    check_line(lines[0], video=False)
    assert cv2.imread(str(rendered)).shape == cv2.imread(str(image)).shape
    assert "JSON Lines in stdout" in err and str(rendered) in err


def test_spot_a_folder_writes_one_line_per_image_in_natural_order(weights, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, source in [("img_10.jpg", "img_901.jpg"), ("img_9.jpg", "img_902.jpg")]:
        shutil.copy(IMAGES / source, folder / name)
    out = tmp_path / "pred.jsonl"
    code, lines, err = spot([str(folder), "--weights", weights, "--out", str(out), *FAST], capsys)
    assert code == 0 and lines == []  # --out: nothing on stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["source"] for line in lines] == [
        str(folder / "img_9.jpg"),
        str(folder / "img_10.jpg"),
    ]
    for line in lines:
        check_line(line, video=False)
    assert str(out) in err.splitlines()[-1]


def test_spot_a_video_tracks_and_accounts_for_every_frame(weights, tmp_path, capsys):
    clip = cut_clip(VIDEO, tmp_path / "clip.mp4", 25)
    with av.open(str(clip)) as container:
        expected_pts = [f.time for f in container.decode(video=0)]
    rendered = tmp_path / "annotated.mp4"
    args = [str(clip), "--weights", weights, "--detect-every", "5", "--keyframes", "fixed",
            "--render", str(rendered)]
    code, lines, err = spot([*args, *FAST], capsys)
    assert code == 0
    assert [line["frame"] for line in lines] == list(range(len(expected_pts)))
    assert [line["pts"] for line in lines] == pytest.approx(expected_pts)
    assert {line["source"] for line in lines} == {str(clip)}
    for line in lines:
        check_line(line, video=True)
    spotted = len(range(0, len(expected_pts), 5))  # frames 0, 5, 10, ...
    assert f"{len(expected_pts)} frames ({spotted} spotted, " in err
    with av.open(str(rendered)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(expected_pts)


@pytest.mark.parametrize("case", ["missing", "corrupt_image", "corrupt_video"])
def test_bad_input_is_one_error_line_and_exit_2(case, weights, tmp_path, capsys):
    path = (
        tmp_path
        / {"missing": "nope.mp4", "corrupt_image": "bad.jpg", "corrupt_video": "bad.mp4"}[case]
    )
    if case == "corrupt_image":
        path.write_bytes((IMAGES / "img_901.jpg").read_bytes()[:400])
    elif case == "corrupt_video":
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    code, lines, err = spot([str(path), "--weights", weights, *FAST], capsys)
    assert code == 2 and lines == []
    assert err.count("\n") == 1 and err.startswith("clipspot spot: error: ")
    assert str(path) in err and "Traceback" not in err


def test_console_entry_reports_a_missing_input_without_traceback(tmp_path):
    missing = tmp_path / "missing.jpg"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "spot", str(missing)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"clipspot spot: error: {missing}: no such file or directory\n"


def test_input_scale_enlarges_the_network_input_but_answers_in_image_pixels():
    from pipeline.model.preprocess import network_size

    assert network_size(640, 960, 1280, input_scale=4 / 3) == (864, 1280)
    assert network_size(1080, 1920, 1280, input_scale=4 / 3) == (704, 1280)  # capped
    assert network_size(640, 960, 1280) == (640, 960)  # never enlarged unless asked
    from pipeline.data.readers import icdar_gt_path, read_icdar_gt
    from pipeline.eval.polygons import iou, to_shape
    from pipeline.spotter import Spotter

    image = cv2.cvtColor(cv2.imread(str(IMAGES / "img_901.jpg")), cv2.COLOR_BGR2RGB)
    truth = [to_shape(w.polygon) for w in read_icdar_gt(icdar_gt_path(IMAGES / "img_901.jpg"))]
    for scale in (1.0, 4 / 3):
        spotter = Spotter.load(input_scale=scale)
        assert spotter.postprocess.input_scale == scale
        words = spotter.spot([image])[0]
        assert words, f"no words found at input scale {scale}"
        # Reported words lie on annotated ones, in the original image's pixels.
        on_truth = [max(iou(to_shape(w.polygon), t) for t in truth) > 0.3 for w in words]
        assert sum(on_truth) >= 0.75 * len(words)


def test_a_bad_input_scale_is_one_error_line(capsys):
    code, lines, err = spot([str(IMAGES / "img_901.jpg"), "--input-scale", "0"], capsys)
    assert code == 2 and lines == []
    assert err == "clipspot spot: error: --input-scale must be between 0.1 and 4, got 0.0\n"
