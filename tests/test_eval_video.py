"""`clipspot eval` on video: ICDAR2015-video MOTA/MOTP/IDF1 and track-level end-to-end.

Each case is a tiny synthetic video ground truth (the clipspot-video-gt/1 JSON) with predictions
written by hand; the expected numbers are worked out in the comments from the definitions:
MOTA = 1 - (misses + false positives + ID switches) / GT objects,
IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN) over the best one-to-one track assignment,
MOTP = mean IoU of matches, track-level P/R/H as in docs/evaluation.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.data.video_gt import read_video_gt
from pipeline.eval.video_protocol import evaluate_video
from pipeline.jsonl import read_frame_results
from services.cli.main import main


def quad(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


A = quad(100, 100, 200, 120)
A_SHIFTED = quad(110, 100, 210, 120)  # IoU with A = 1800 / 2200 = 0.818
B = quad(300, 300, 400, 340)
D = quad(500, 100, 600, 140)  # a don't-care region
INSIDE_D = quad(510, 105, 590, 135)  # entirely inside D -> removed
PART_D = quad(570, 100, 645, 140)  # 30 of its 75 px inside D (40 %) -> kept
E = quad(700, 100, 800, 140)
M = quad(100, 400, 200, 440)
FAR = quad(800, 500, 900, 530)


def obj(track: int, box: list, text: str, dont_care: bool = False) -> dict:
    return {"track_id": track, "polygon": box, "text": text, "dont_care": dont_care}


def inst(track: int | None, box: list, text: str) -> dict:
    return {"polygon": box, "text": text, "score": 0.9, "track_id": track}


def write_case(tmp_path: Path, gt_frames: list[list[dict]], tracks: dict[int, str],
               pred_frames: dict[int, list[dict]], name: str = "case") -> tuple[Path, Path]:
    """GT JSON with one entry per frame; predictions only for the frames given."""
    gt = {"format": "clipspot-video-gt/1", "video": f"{name}.mp4", "width": 960, "height": 640,
          "fps": 25.0,
          "frames": [{"frame": i, "pts": i / 25, "objects": objects}
                     for i, objects in enumerate(gt_frames)],
          "tracks": [{"track_id": t, "text": text} for t, text in tracks.items()]}
    gt_path = tmp_path / f"{name}.json"
    gt_path.write_text(json.dumps(gt))
    pred_path = tmp_path / f"{name}.jsonl"
    lines = [{"source": f"/videos/{name}.mp4", "frame": f, "pts": f / 25, "instances": items}
             for f, items in sorted(pred_frames.items())]
    pred_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return gt_path, pred_path


def score(gt_path: Path, pred_path: Path) -> dict:
    return evaluate_video(read_video_gt(gt_path), list(read_frame_results(pred_path)))


def test_split_track_is_one_id_switch(tmp_path) -> None:
    # GT track 1 in frames 0-3; the prediction switches from id 10 to id 11 at frame 2.
    gt, pred = write_case(tmp_path, [[obj(1, A, "HELLO")]] * 4, {1: "HELLO"},
                          {f: [inst(10 if f < 2 else 11, A, "Hello")] for f in range(4)})
    result = score(gt, pred)
    for variant in ("tracking", "end_to_end"):
        m = result[variant]
        assert m["switches"] == 1 and m["misses"] == 0 and m["false_positives"] == 0
        assert m["mota"] == pytest.approx(1 - 1 / 4)  # one switch over 4 GT objects
        # best assignment 1<->10: IDTP 2, IDFN 2 (frames 2-3), IDFP 2 (track 11): 4 / 8.
        assert m["idf1"] == pytest.approx(0.5)
        assert m["motp"] == pytest.approx(1.0)
    # track level: 2 predicted tracks both read HELLO, one GT track: P 1/2, R 1, H 2/3.
    t = result["track_e2e"]
    assert (t["precision"], t["recall"], t["hmean"]) == pytest.approx((0.5, 1.0, 2 / 3))


def test_merged_tracks(tmp_path) -> None:
    # GT: track 1 "AAA" at A in frames 0-1, track 2 "BBB" at B in frames 2-3. One predicted
    # track 10 follows both; its vote is a tie AAA/BBB, which goes to the first seen: AAA.
    gt_frames = [[obj(1, A, "AAA")]] * 2 + [[obj(2, B, "BBB")]] * 2
    preds = {0: [inst(10, A, "AAA")], 1: [inst(10, A, "aaa")],
             2: [inst(10, B, "BBB")], 3: [inst(10, B, "BBB")]}
    result = score(*write_case(tmp_path, gt_frames, {1: "AAA", 2: "BBB"}, preds))
    track = result["tracking"]
    # Every frame matches and GT 2 had no earlier partner, so no switch: MOTA 1.
    assert (track["matches"], track["switches"]) == (4, 0)
    assert track["mota"] == pytest.approx(1.0)
    # 10 can be one GT identity only: IDTP 2, IDFN 2, IDFP 2 -> IDF1 0.5.
    assert track["idf1"] == pytest.approx(0.5)
    # End to end, 10 reads AAA, so frames 2-3 are a miss and a false positive each:
    # MOTA = 1 - (2 + 2) / 4 = 0; IDF1 = 2*2 / (4 + 2 + 2) = 0.5.
    e2e = result["end_to_end"]
    assert (e2e["misses"], e2e["false_positives"]) == (2, 2)
    assert e2e["mota"] == pytest.approx(0.0)
    assert e2e["idf1"] == pytest.approx(0.5)
    # Track level: 1 hit (10<->1) of 1 predicted and 2 GT tracks: P 1, R 1/2, H 2/3.
    t = result["track_e2e"]
    assert (t["precision"], t["recall"], t["hmean"]) == pytest.approx((1.0, 0.5, 2 / 3))


def test_dont_care_duplicate_miss_and_false_positives(tmp_path) -> None:
    # One frame. GT: 1 HELLO at A, 2 "###" at D, 3 at E flagged dont_care, 4 MISS at M.
    gt_frames = [[obj(1, A, "HELLO"), obj(2, D, "###"), obj(3, E, "WORLD", dont_care=True),
                  obj(4, M, "MISS")]]
    tracks = {1: "HELLO", 2: "###", 3: "WORLD", 4: "MISS"}
    preds = {0: [inst(10, A, "HELLO"), inst(11, A_SHIFTED, "HELLO"),  # 11: a duplicate -> FP
                 inst(12, INSIDE_D, "x"), inst(13, E, "WORLD"),  # removed (don't care)
                 inst(14, FAR, "NOISE"), inst(15, PART_D, "y")]}  # 40 % inside D: FP
    result = score(*write_case(tmp_path, gt_frames, tracks, preds))
    for variant in ("tracking", "end_to_end"):
        m = result[variant]
        # care GT 2 (1 and 4); care predictions 4 (10, 11, 14, 15); 10 matches 1 exactly.
        assert (m["gt_objects"], m["predictions"]) == (2, 4)
        assert (m["matches"], m["misses"], m["false_positives"]) == (1, 1, 3)
        assert m["mota"] == pytest.approx(1 - (1 + 3) / 2)  # -1.0
        assert m["idf1"] == pytest.approx(2 / (2 + 3 + 1))  # IDTP 1, IDFP 3, IDFN 1
        assert m["motp"] == pytest.approx(1.0)  # the exact box wins over the shifted one
    # Track level: GT tracks {1, 4}; live predicted tracks {10, 11, 14, 15}; one hit.
    # P 1/4, R 1/2, H = 2(1/8)/(3/4) = 1/3.
    t = result["track_e2e"]
    assert (t["gt_tracks"], t["pred_tracks"], t["matched"]) == (2, 4, 1)
    assert t["hmean"] == pytest.approx(1 / 3)


def test_wrong_voted_text_fails_end_to_end_only(tmp_path) -> None:
    # Frames 0-2, GT "Exit!" (normalised EXIT). Readings 3x: EX1T, EX1T, EXIT -> vote EX1T.
    # Frame 3 has no prediction line: a miss in both accountings.
    gt, pred = write_case(tmp_path, [[obj(1, A, "Exit!")]] * 4, {1: "Exit!"},
                          {0: [inst(5, A, "EX1T")], 1: [inst(5, A, "ex1t")],
                           2: [inst(5, A, "EXIT")]})
    result = score(gt, pred)
    assert result["tracking"]["mota"] == pytest.approx(1 - 1 / 4)  # frame 3 missed
    assert result["tracking"]["idf1"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 1))
    # End to end nothing is a candidate: 4 misses + 3 false positives over 4 -> -0.75.
    assert result["end_to_end"]["mota"] == pytest.approx(1 - 7 / 4)
    assert result["end_to_end"]["idf1"] == 0.0
    assert result["track_e2e"]["matched"] == 0


def test_ground_truth_as_prediction_scores_one(tmp_path, capsys) -> None:
    # Moving text, a don't-care object, a track that ends and one that starts.
    gt_frames = [[obj(1, quad(10 + 7 * f, 50, 110 + 7 * f, 70), "Ticker"),
                  obj(2, D, "###"),
                  *([obj(3, B, "Sale 50%")] if f < 6 else [obj(4, E, "OPEN")])]
                 for f in range(10)]
    gt, _ = write_case(tmp_path, gt_frames, {1: "Ticker", 2: "###", 3: "Sale 50%", 4: "OPEN"},
                       {})
    out = tmp_path / "as_pred.jsonl"
    assert main(["eval", "--gt", str(gt), "--as-pred", "--out", str(out)]) == 0
    assert main(["eval", "--gt", str(gt), "--pred", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["videos"] == 1
    for section, keys in (("tracking", ("mota", "motp", "idf1")),
                          ("end_to_end", ("mota", "motp", "idf1")),
                          ("track_e2e", ("precision", "recall", "hmean"))):
        for key in keys:
            assert metrics[section][key] == pytest.approx(1.0, abs=1e-6), (section, key)
    assert metrics["per_video"][0]["track_e2e"]["gt_tracks"] == 3  # track 2 is don't care


def test_prediction_for_a_frame_the_video_lacks_is_an_error(tmp_path, capsys) -> None:
    gt, pred = write_case(tmp_path, [[obj(1, A, "HI")]], {1: "HI"}, {7: [inst(1, A, "HI")]})
    assert main(["eval", "--gt", str(gt), "--pred", str(pred)]) == 2
    err = capsys.readouterr().err
    assert "frame 7" in err and err.count("\n") == 1


def test_videos_are_averaged_unweighted(tmp_path, capsys) -> None:
    # Video "long": 4 frames, perfectly tracked (MOTA 1). Video "short": 1 frame, nothing
    # predicted (MOTA 1 - 1/1 = 0, IDF1 0, MOTP 0: no match). Mean over videos: 0.5 for MOTA
    # (frame-pooled it would be 1 - 1/5 = 0.8).
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    _, long_pred = write_case(gt_dir, [[obj(1, A, "ONE")]] * 4, {1: "ONE"},
                              {f: [inst(3, A, "ONE")] for f in range(4)}, name="long")
    _, short_pred = write_case(gt_dir, [[obj(1, B, "TWO")]], {1: "TWO"}, {0: []}, name="short")
    pred = tmp_path / "all.jsonl"
    pred.write_text(long_pred.read_text() + short_pred.read_text())
    long_pred.unlink()
    short_pred.unlink()
    assert main(["eval", "--gt", str(gt_dir), "--pred", str(pred)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["videos"] == 2
    assert metrics["tracking"]["mota"] == pytest.approx(0.5)
    assert metrics["tracking"]["motp"] == pytest.approx(0.5)
    assert metrics["end_to_end"]["idf1"] == pytest.approx(0.5)
    assert metrics["track_e2e"]["recall"] == pytest.approx(0.5)


def test_empty_video_and_empty_predictions(tmp_path) -> None:
    # Nothing to find and nothing found: 1 everywhere (our rule; see docs/evaluation.md).
    empty = score(*write_case(tmp_path, [[], []], {}, {0: [], 1: []}, name="empty"))
    assert empty["tracking"]["mota"] == empty["end_to_end"]["idf1"] == 1.0
    # Text everywhere and an empty prediction file: every object missed, 0 everywhere.
    missed = score(*write_case(tmp_path, [[obj(1, A, "GO")]] * 3, {1: "GO"}, {}, name="none"))
    assert missed["tracking"]["misses"] == 3
    assert missed["tracking"]["mota"] == missed["tracking"]["idf1"] == 0.0
    assert missed["tracking"]["motp"] == 0.0
    assert missed["track_e2e"]["recall"] == 0.0


def test_malformed_video_ground_truth_is_a_one_line_error(tmp_path, capsys) -> None:
    gt, pred = write_case(tmp_path, [[obj(1, A, "HI")]], {1: "HI"}, {0: []})
    data = json.loads(gt.read_text())
    data["frames"][0]["objects"][0]["polygon"] = [[1, 2], [3, 4]]  # two points, not four
    gt.write_text(json.dumps(data))
    assert main(["eval", "--gt", str(gt), "--pred", str(pred)]) == 2
    err = capsys.readouterr().err
    assert str(gt) in err and "polygon" in err and err.count("\n") == 1
