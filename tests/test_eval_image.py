"""`clipspot eval` on still images: ICDAR2015 Challenge 4 rules, hand-computed cases, real GT.

Expected numbers are worked out in the comments from the definitions in docs/evaluation.md:
P = matched / care detections, R = matched / care GT, H = 2PR / (P + R), pooled over images.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared_data import SHARED_DATA

from pipeline.data.readers import read_icdar_gt
from pipeline.eval.polygons import iou, to_shape
from pipeline.eval.text_match import image_texts_match, normalize_video_text, vote_text
from services.cli.main import main

REPO = Path(__file__).resolve().parent.parent
IC15_GT = SHARED_DATA / "ic15_train" / "gt"


def quad(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """Axis-aligned clockwise quad (image coordinates, y down)."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def gt_line(box: list[list[float]], text: str) -> str:
    return ",".join(f"{v:g}" for point in box for v in point) + f",{text}"


def pred_line(name: str, words: list[tuple[list[list[float]], str]]) -> str:
    instances = [{"polygon": b, "text": t, "score": 0.9, "track_id": None} for b, t in words]
    return json.dumps({"source": f"some/dir/{name}.jpg", "frame": 0, "pts": None,
                       "instances": instances})


def run_eval(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    code = main(["eval", *map(str, args)])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and out.strip() else {}), err


A = quad(100, 100, 200, 120)  # area 2000
A_SHIFTED = quad(110, 100, 210, 120)  # IoU with A = 1800 / 2200 = 0.818
B = quad(300, 300, 400, 340)
B_HALF = quad(350, 300, 450, 340)  # IoU with B = 2000 / 6000 = 0.333 -> no match
C = quad(500, 100, 600, 140)  # a ### region
INSIDE_C = quad(510, 105, 590, 135)  # entirely inside C -> ignored
FAR = quad(800, 500, 900, 530)


@pytest.fixture
def small_case(tmp_path: Path) -> tuple[Path, Path]:
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "gt_img_1.txt").write_text(
        "\ufeff" + "\n".join([gt_line(A, "HELLO"), gt_line(B, "WORLD"), gt_line(C, "###")]))
    (gt / "gt_img_2.txt").write_text("\n".join([
        gt_line(A, "Café!"), gt_line(B, "PRICES!!"), gt_line(FAR, "OPEN")]))
    (gt / "gt_img_3.txt").write_text(gt_line(A, "STOP"))
    (gt / "gt_img_4.txt").write_text("\n".join([gt_line(A, "EXIT"), gt_line(B, "HERE")]))
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n".join([
        # img_1: A matched with the right text (case ignored); A_SHIFTED is a duplicate -> FP;
        # INSIDE_C is ignored (don't care); B_HALF misses B -> FP, and B is missed.
        pred_line("img_1", [(A, "hello"), (A_SHIFTED, "HELLO"), (INSIDE_C, "x"),
                            (B_HALF, "WORLD")]),
        # img_2: three geometric matches; CAFÉ and prices are right, 0PEN is not.
        pred_line("img_2", [(A, "CAFÉ"), (B, "prices"), (FAR, "0PEN")]),
        # img_3: the right word in the wrong place -> FP, and STOP missed.
        pred_line("img_3", [(FAR, "STOP")]),
        # img_4: no line at all -> EXIT and HERE missed.
    ]) + "\n")
    return gt, pred


def test_hand_computed_detection_and_end_to_end(capsys, small_case) -> None:
    gt, pred = small_case
    code, metrics, _ = run_eval(capsys, "--gt", gt, "--pred", pred)
    assert code == 0
    # care GT: 2 + 3 + 1 + 2 = 8; care detections: 3 + 3 + 1 = 7 (INSIDE_C ignored).
    # geometric matches: 1 + 3 = 4 -> P = 4/7, R = 4/8, H = 2(4/7)(1/2)/(4/7 + 1/2) = 8/15.
    det = metrics["detection"]
    assert (det["gt_care"], det["det_care"], det["matched"]) == (8, 7, 4)
    assert det["precision"] == pytest.approx(4 / 7)
    assert det["recall"] == pytest.approx(0.5)
    assert det["hmean"] == pytest.approx(8 / 15)
    # text right in 1 + 2 = 3 -> P = 3/7, R = 3/8, H = 2(9/56)/(45/56) = 0.4.
    e2e = metrics["end_to_end"]
    assert e2e["matched"] == 3
    assert (e2e["precision"], e2e["recall"]) == (pytest.approx(3 / 7), pytest.approx(3 / 8))
    assert e2e["hmean"] == pytest.approx(0.4)
    assert metrics["images"] == 4


def test_image_range_filter_drops_images_and_their_predictions(capsys, small_case) -> None:
    gt, pred = small_case
    code, metrics, _ = run_eval(capsys, "--gt", gt, "--pred", pred, "--images", "2-3")
    assert code == 0
    # img_2 and img_3 only: care GT 3 + 1 = 4, care detections 3 + 1 = 4, matched 3, text 2.
    assert metrics["images"] == 2
    assert metrics["detection"]["precision"] == pytest.approx(3 / 4)
    assert metrics["end_to_end"]["recall"] == pytest.approx(2 / 4)


def test_detection_just_half_inside_dont_care_counts(tmp_path, capsys) -> None:
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "gt_img_1.txt").write_text(gt_line(C, "###"))
    # 50 of 100 px wide inside C: exactly half is not "more than half" -> a false positive.
    half_in = quad(550, 100, 650, 140)
    pred = tmp_path / "p.jsonl"
    pred.write_text(pred_line("img_1", [(half_in, "A"), (INSIDE_C, "B")]) + "\n")
    code, metrics, _ = run_eval(capsys, "--gt", gt, "--pred", pred)
    assert code == 0
    assert metrics["detection"]["det_care"] == 1
    assert metrics["detection"]["precision"] == 0.0


def test_ground_truth_as_prediction_scores_one_on_validation_split(tmp_path, capsys) -> None:
    out = tmp_path / "val_gt.jsonl"
    code, _, _ = run_eval(capsys, "--gt", IC15_GT, "--as-pred", "--images", "901-1000",
                          "--out", out)
    assert code == 0
    code, metrics, _ = run_eval(capsys, "--gt", IC15_GT, "--pred", out, "--images", "901-1000")
    assert code == 0
    care = sum(not w.dont_care for n in range(901, 1001)
               for w in read_icdar_gt(IC15_GT / f"gt_img_{n}.txt"))
    assert metrics["images"] == 100
    for task in ("detection", "end_to_end"):
        assert metrics[task]["gt_care"] == care
        assert metrics[task]["matched"] == care
        for key in ("precision", "recall", "hmean"):
            assert metrics[task][key] == 1.0


def test_text_rules() -> None:
    assert image_texts_match("PRICES!!", "prices")
    assert image_texts_match("L'OREAL", "loreal")
    assert not image_texts_match("Café", "CAFE")  # letters keep their accents
    assert not image_texts_match("-", "")  # an empty form never matches
    assert normalize_video_text("Hello, World 世界!") == "HELLOWORLD世界"
    assert vote_text(["", "hell0", "Hello", "HELLO!", ""]) == "HELLO"
    assert vote_text(["", ""]) == ""


def test_degenerate_polygons_overlap_nothing_or_their_hull() -> None:
    square = to_shape(quad(0, 0, 10, 10))
    bow_tie = to_shape(np.array([[0, 0], [10, 10], [10, 0], [0, 10]]))  # crosses itself
    assert bow_tie.is_valid and iou(square, bow_tie) == pytest.approx(1.0)  # hull = the square
    assert iou(square, to_shape([[0, 0], [10, 0], [20, 0], [5, 0]])) == 0.0  # zero area
    assert iou(square, to_shape([[0, 0], [1, 1]])) == 0.0  # too few points


def test_missing_paths_are_one_line_errors(tmp_path, capsys, small_case) -> None:
    gt, pred = small_case
    code, _, err = run_eval(capsys, "--gt", tmp_path / "nope", "--pred", pred)
    assert code == 2 and "nope" in err and err.count("\n") == 1
    code, _, err = run_eval(capsys, "--gt", gt, "--pred", tmp_path / "missing.jsonl")
    assert code == 2 and "missing.jsonl" in err and err.count("\n") == 1


def test_prediction_for_an_image_without_ground_truth_is_an_error(tmp_path, capsys,
                                                                  small_case) -> None:
    gt, _ = small_case
    pred = tmp_path / "other.jsonl"
    pred.write_text(pred_line("img_77", [(A, "X")]) + "\n")
    code, _, err = run_eval(capsys, "--gt", gt, "--pred", pred)
    assert code == 2 and "gt_img_77.txt" in err


def test_malformed_ground_truth_line_names_file_and_line(tmp_path, small_case) -> None:
    gt, pred = small_case
    (gt / "gt_img_3.txt").write_text(gt_line(A, "STOP") + "\n12,34,oops\n")
    # A real process: the user sees one line on stderr, exit code 2, no traceback.
    proc = subprocess.run([sys.executable, "-m", "services.cli.main", "eval", "--gt", str(gt),
                           "--pred", str(pred)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert f"{gt / 'gt_img_3.txt'}:2" in lines[0]
