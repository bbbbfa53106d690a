"""`clipspot synth camera`: camera-motion clips over real IC15 stills, exact ground truth."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from shared_data import SHARED_DATA

from pipeline.data.camera_clips import (
    CameraClipConfig,
    load_still,
    make_camera_clip,
    plan_views,
    set_stills,
)
from pipeline.data.video_gt import read_video_gt
from services.cli.main import main

IC15 = SHARED_DATA / "ic15_train"
pytestmark = pytest.mark.skipif(not IC15.is_dir(), reason="shared IC15 data not present")
STILLS = (802, 950)  # both have several legible words
CUT_CLIP = CameraClipConfig(seconds=2.0, fps=25, seed=4, shot_seconds=1.0)  # cut at frame 25


def _paths(numbers: tuple[int, ...]) -> tuple[list[Path], list[Path]]:
    images = [IC15 / "images" / f"img_{n}.jpg" for n in numbers]
    return images, [IC15 / "gt" / f"gt_img_{n}.txt" for n in numbers]


def _decode(path: Path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        return [f.to_ndarray(format="rgb24") for f in frames], [float(f.time) for f in frames]


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("camera") / "cut.mp4"
    json_path = make_camera_clip(*_paths(STILLS), out, CUT_CLIP)
    frames, times = _decode(out)
    return read_video_gt(json_path), frames, times


def _rectify(image: np.ndarray, quad: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    box = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), box)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.warpPerspective(grey, matrix, (w, h), flags=cv2.INTER_AREA).astype(np.float32)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / max(1e-6, np.sqrt((a * a).sum() * (b * b).sum())))


def test_clip_decodes_to_the_stated_frames_and_size(cut_clip):
    gt, frames, times = cut_clip
    assert len(frames) == len(gt.frames) == CUT_CLIP.frame_count == 50
    assert all(f.shape == (360, 640, 3) for f in frames)
    assert (gt.width, gt.height, gt.fps) == (640, 360, 25.0)
    assert [f.pts for f in gt.frames] == pytest.approx(times, abs=1e-9)
    assert {o.track_id for f in gt.frames for o in f.objects} == set(gt.tracks)


def test_ground_truth_quads_land_on_the_still_words_pixels(cut_clip):
    gt, frames, _ = cut_clip
    stills = [load_still(i, g) for i, g in zip(*_paths(STILLS), strict=True)]
    views = plan_views(CUT_CLIP, stills)
    scores, shifted, checked = [], [], 0
    for index in range(0, len(frames), 3):
        view = views[index]
        still = stills[view.still]
        inverse = cv2.invertAffineTransform(view.matrix)
        for obj in gt.frames[index].objects:
            back = obj.polygon @ inverse[:, :2].T + inverse[:, 2]
            # The quad is the still's own quad through the camera (JSON keeps 2 decimals).
            assert min(np.abs(w.polygon - back).max() for w in still.words) < 0.05
            size = np.ptp(obj.polygon, axis=0)
            if obj.dont_care or size.min() < 12:
                continue
            box = (int(size[0]) + 1, int(size[1]) + 1)
            seen = _rectify(frames[index], obj.polygon, box)
            scores.append(_ncc(seen, _rectify(still.image, back, box)))
            # Control: the same word one word-height lower on the still.
            lower = back + np.float32([0, np.ptp(back[:, 1])])
            shifted.append(_ncc(seen, _rectify(still.image, lower, box)))
            checked += 1
    assert checked > 30
    assert np.median(scores) > 0.9 and np.percentile(scores, 10) > 0.75
    assert np.median(shifted) < 0.5


def test_a_hard_cut_changes_the_object_ids(cut_clip):
    gt, _, _ = cut_clip
    first = {o.track_id for f in gt.frames[:25] for o in f.objects}
    second = {o.track_id for f in gt.frames[25:] for o in f.objects}
    assert first and second and not first & second
    # Within a shot a word keeps its id from frame to frame.
    kept = {o.track_id for o in gt.frames[10].objects} & {o.track_id for o in gt.frames[11].objects}
    assert kept


def test_zooming_out_shows_the_whole_still():
    images, gts = _paths(STILLS[:1])
    stills = [load_still(images[0], gts[0])]
    views = plan_views(CameraClipConfig(seconds=2, seed=1, motions=("zoom",)), stills)
    scales = [v.matrix[0, 0] for v in views]
    assert min(scales) == pytest.approx(min(640 / 960, 360 / 640))  # 960x640 fits, letterboxed
    assert max(scales) > 1.0  # and a close-up at the other end


def test_same_seed_same_bytes(tmp_path):
    for name, seed in (("a", 9), ("b", 9), ("c", 10)):
        (tmp_path / name).mkdir()
        config = CameraClipConfig(seconds=0.6, seed=seed)
        make_camera_clip(*_paths(STILLS), tmp_path / name / "clip.mp4", config)
    for name in ("clip.mp4", "clip.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "clip.mp4").read_bytes() != (tmp_path / "c" / "clip.mp4").read_bytes()


def test_clip_sets_draw_from_their_own_stills():
    tune, report = set_stills(IC15, "tune"), set_stills(IC15, "report")
    assert min(tune) >= 801 and max(tune) <= 900 and min(report) >= 901 and max(report) <= 1000
    assert len(tune) > 40 and len(report) > 40


def test_cli_writes_clips_the_video_gt_reader_reads(tmp_path):
    args = [
        "synth",
        "camera",
        "--ic15",
        str(IC15),
        "--split",
        "report",
        "--count",
        "2",
        "--seconds",
        "1",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    for index in range(2):
        gt = read_video_gt(tmp_path / f"camera_report_{index:03d}.json")
        assert gt.video == f"camera_report_{index:03d}.mp4" and (tmp_path / gt.video).is_file()
        assert len(gt.frames) == 25 and (gt.width, gt.height) == (640, 360)
        assert any(not o.dont_care for f in gt.frames for o in f.objects)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split", "train"], "--split 'train'"),
        (["--ic15", "MISSING"], "folder not found"),
        (["--ic15", "EMPTY"], "not an IC15 folder"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys, extra, message):
    (tmp_path / "empty").mkdir()
    names = {"MISSING": str(tmp_path / "nope"), "EMPTY": str(tmp_path / "empty")}
    extra = [names.get(e, e) for e in extra]
    args = ["synth", "camera", "--ic15", str(IC15), "--out", str(tmp_path / "out"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
