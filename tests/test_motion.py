"""MotionFollower: polygons follow real text by optical flow; cuts are flagged; exits are lost."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from shapely.geometry import Polygon
from shared_data import SHARED_DATA

from pipeline.data.camera_clips import CameraClipConfig, make_camera_clip
from pipeline.data.readers import read_icdar_gt
from pipeline.data.video_gt import read_video_gt
from pipeline.track.motion import MotionFollower, looks_like_cut, needs_keyframe

IC15 = SHARED_DATA / "ic15_train"
pytestmark = pytest.mark.skipif(not IC15.is_dir(), reason="shared IC15 data not present")
FOLLOW_FRAMES = 10  # frames followed without any detection
MIN_IOU = 0.7  # every word, after FOLLOW_FRAMES
MIN_MEAN_IOU = 0.9


def _paths(numbers: tuple[int, ...]) -> tuple[list[Path], list[Path]]:
    images = [IC15 / "images" / f"img_{n}.jpg" for n in numbers]
    return images, [IC15 / "gt" / f"gt_img_{n}.txt" for n in numbers]


def _clip(folder: Path, numbers: tuple[int, ...], config: CameraClipConfig):
    json_path = make_camera_clip(*_paths(numbers), folder / "clip.mp4", config)
    with av.open(str(folder / "clip.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return read_video_gt(json_path), frames


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = Polygon(a), Polygon(b)
    return pa.intersection(pb).area / pa.union(pb).area


def _still(number: int) -> tuple[np.ndarray, list[np.ndarray]]:
    image = cv2.imread(str(IC15 / "images" / f"img_{number}.jpg"))[..., ::-1]
    words = read_icdar_gt(IC15 / "gt" / f"gt_img_{number}.txt")
    return np.ascontiguousarray(image), [w.polygon for w in words if not w.dont_care]


def _warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(image, matrix, (640, 360), flags=cv2.INTER_LINEAR)


def _move(matrix: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    return polygon @ matrix[:, :2].T + matrix[:, 2]


def _inside(polygon: np.ndarray, width: int = 640, height: int = 360) -> bool:
    return bool((polygon >= 0).all() and (polygon <= [width - 1, height - 1]).all())


@pytest.mark.parametrize(("number", "motions"), [(802, ("pan", "shake")), (813, ("pan", "zoom"))])
def test_pan_keeps_followed_polygons_on_the_words(tmp_path, number, motions):
    config = CameraClipConfig(seconds=2.0, seed=number, motions=motions)
    gt, frames = _clip(tmp_path, (number,), config)
    ious = []
    for start in range(0, len(frames) - FOLLOW_FRAMES, FOLLOW_FRAMES):
        end = {o.track_id: o.polygon for o in gt.frames[start + FOLLOW_FRAMES].objects}
        words = {
            o.track_id: o.polygon
            for o in gt.frames[start].objects
            if not o.dont_care and o.track_id in end and _inside(end[o.track_id])
        }
        follower = MotionFollower()
        follower.reset(frames[start])
        for frame in frames[start + 1 : start + FOLLOW_FRAMES + 1]:
            step = follower.follow(frame, list(words.values()))
            assert not looks_like_cut(step.motion)
            assert not any(r.lost for r in step.results)
            words = dict(zip(words, (r.polygon for r in step.results), strict=True))
        ious += [_iou(polygon, end[track_id]) for track_id, polygon in words.items()]
    assert len(ious) >= 10
    assert min(ious) > MIN_IOU and np.mean(ious) > MIN_MEAN_IOU, np.round(ious, 3)


def test_known_zoom_and_pan_is_recovered():
    image, words = _still(950)
    # Each frame zooms in 1 % about the frame centre and pans 3 px left and 1 px up.
    step_matrix = np.array([[1.01, 0, 320 - 1.01 * 320 - 3], [0, 1.01, 180 - 1.01 * 180 - 1]])
    cameras = [np.array([[0.8, 0, 200.0], [0, 0.8, -236.0]])]  # its words in the middle
    for _ in range(FOLLOW_FRAMES):
        cameras.append(
            (np.vstack([step_matrix, [0, 0, 1]]) @ np.vstack([cameras[-1], [0, 0, 1]]))[:2]
        )
    words = [w for w in words if _inside(_move(cameras[0], w)) and _inside(_move(cameras[-1], w))]
    assert len(words) >= 3
    follower = MotionFollower()
    follower.reset(_warp(image, cameras[0]))
    polygons = [_move(cameras[0], w) for w in words]
    for camera in cameras[1:]:
        step = follower.follow(_warp(image, camera), polygons)
        assert step.motion.scale == pytest.approx(1.01, abs=0.003)
        np.testing.assert_allclose(step.motion.matrix, step_matrix, atol=0.5)
        assert not needs_keyframe(step.motion, 640)
        polygons = [r.polygon for r in step.results]
    ious = [_iou(p, _move(cameras[-1], w)) for p, w in zip(polygons, words, strict=True)]
    assert min(ious) > 0.8, np.round(ious, 3)


def test_a_hard_cut_is_flagged(tmp_path):
    config = CameraClipConfig(seconds=2.0, seed=3, shot_seconds=1.0)  # cut at frame 25
    gt, frames = _clip(tmp_path, (813, 950), config)
    follower = MotionFollower()
    follower.reset(frames[0])
    flagged = []
    for index, frame in enumerate(frames[1:], start=1):
        polygons = [o.polygon for o in gt.frames[index - 1].objects]
        step = follower.follow(frame, polygons)
        if looks_like_cut(step.motion):
            flagged.append(index)
            assert needs_keyframe(step.motion, 640)
            assert all(r.lost for r in step.results)
    assert flagged == [25]


def test_a_polygon_that_leaves_the_frame_is_lost():
    image, _ = _still(802)
    follower = MotionFollower()
    camera = np.array([[1.0, 0, -150.0], [0, 1.0, -140.0]])
    follower.reset(_warp(image, camera))
    left = np.float32([[40, 150], [110, 150], [110, 175], [40, 175]])  # near the left edge
    middle = np.float32([[300, 150], [370, 150], [370, 175], [300, 175]])
    polygons, lost_at = [left, middle], None
    for index in range(1, 12):
        camera[0, 2] -= 12  # the scene moves 12 px left a frame
        step = follower.follow(_warp(image, camera), polygons)
        assert not step.results[1].lost
        if step.results[0].lost and lost_at is None:
            lost_at = index
        polygons = [r.polygon for r in step.results]
    # The box leaves when less than a quarter of it is inside: x1 = 110 - 12 k < 70 / 4.
    assert lost_at == 8
    np.testing.assert_allclose(polygons[1], middle - [12 * 11, 0], atol=1.0)


def test_follow_needs_a_reset_first():
    with pytest.raises(RuntimeError, match="before reset"):
        MotionFollower().follow(np.zeros((36, 64), np.uint8), [])
