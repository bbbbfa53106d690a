"""Camera-motion clips over real stills with exact per-frame ground truth (`synth camera`).

A clip is a virtual camera looking at one real photo (an IC15 still) at a time:

- `pan`: the window glides from one place on the still to another;
- `zoom`: the window grows or shrinks between a close-up and the whole still scaled down to the
  output size (letterboxed in black where the aspect ratios differ);
- `shake`: a small random jitter of a pixel or two on top, every frame;
- `cut`: the clip is split into shots of `shot_seconds`, each on the next still (a hard cut).

The window is a similarity transform (scale + shift, no rotation) from still to frame. Pixels are
warped and the still's ground-truth quads mapped by the same matrix, so the ground truth is exact
up to the H.264 encoding. As in `synth_video`, a word partly outside the frame keeps its full
quad and is don't-care, a word wholly outside is left out, and `###` words stay don't-care.
Track ids are one per (still, word): a word keeps its id while it stays in view (and if its
still comes back later); after a cut to another still every word is a new object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.h264_clips import encode_h264, read_back_pts
from pipeline.data.readers import DONT_CARE, GroundTruthWord, icdar_gt_path, read_icdar_gt
from pipeline.data.splits import IC15_TUNE_FIRST_IMAGE, IC15_VAL_FIRST_IMAGE
from pipeline.data.synth_video import VideoConfig, check_size, parse_names
from pipeline.data.video_gt import (
    FrameGroundTruth,
    GroundTruthObject,
    VideoGroundTruth,
    write_video_gt,
)
from pipeline.errors import ClipSpotError

MOTIONS = ("pan", "zoom", "shake", "cut")
# The fixed clip sets: tuning on the last 100 training stills, reporting on the 100 validation
# stills (the detector never trained on either set's numbers 901..1000).
SPLITS = {
    "tune": (IC15_TUNE_FIRST_IMAGE, IC15_VAL_FIRST_IMAGE - 1),
    "report": (IC15_VAL_FIRST_IMAGE, 1000),
}
MIN_LEGIBLE_WORDS = 3  # a still joins a clip set only with this many legible words ...
MIN_WORD_HEIGHT = 12.0  # ... at least this tall (pixels of the still)
CLOSE_UP = (0.45, 0.7)  # zoomed-in window widths, as a fraction of the still's width
PAN_WIDTH = 0.7  # window width (fraction of the still) when only panning
SHAKE_SIGMA = 1.2  # output pixels; clipped at 3 sigma


@dataclass(frozen=True)
class CameraClipConfig:
    width: int = 640
    height: int = 360
    fps: float = 25.0
    seconds: float = 4.0
    seed: int = 0
    motions: tuple[str, ...] = MOTIONS
    shot_seconds: float = 2.0  # with `cut`: length of one shot on one still

    @property
    def frame_count(self) -> int:
        return max(1, round(self.seconds * self.fps))


@dataclass(frozen=True)
class Still:
    """A photo (RGB uint8) and its ICDAR ground truth."""

    image: np.ndarray
    words: tuple[GroundTruthWord, ...]


@dataclass(frozen=True, eq=False)
class View:
    """What frame k shows: still number `still` seen through `matrix` (2x3, still -> frame)."""

    still: int
    matrix: np.ndarray


def parse_motions(text: str) -> tuple[str, ...]:
    """`"pan,zoom"` -> ("pan", "zoom"); an unknown name -> ClipSpotError."""
    return parse_names(text, MOTIONS, "motion")


def load_still(image_path: str | Path, gt_path: str | Path) -> Still:
    bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ClipSpotError(f"{image_path}: missing or not a readable image")
    return Still(np.ascontiguousarray(bgr[..., ::-1]), tuple(read_icdar_gt(gt_path)))


def plan_views(config: CameraClipConfig, stills: Sequence[Still]) -> list[View]:
    """The camera of every frame (shot k on still k modulo their number); same seed, same plan."""
    rng = np.random.default_rng([config.seed, 2])
    frames = config.frame_count
    per_shot = frames
    if "cut" in config.motions and len(stills) > 1:
        per_shot = max(1, round(config.shot_seconds * config.fps))
    zoom_in_first = bool(rng.integers(2))
    views = []
    for shot, start in enumerate(range(0, frames, per_shot)):
        still = shot % len(stills)
        size = (stills[still].image.shape[1], stills[still].image.shape[0])
        length = min(per_shot, frames - start)
        path = _shot_path(rng, config, stills[still], zoom_in_first ^ bool(shot % 2))
        for k in range(length):
            t = 0.5 - 0.5 * math.cos(math.pi * k / max(1, length - 1))  # eased 0 -> 1
            views.append(View(still, _matrix(config, size, path, t, rng)))
    return views


def _shot_path(
    rng: np.random.Generator, config: CameraClipConfig, still: Still, zoom_in: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (window width, centre x, centre y) of one shot, in still pixels."""
    still_h, still_w = still.image.shape[:2]
    whole = max(still_w, still_h * config.width / config.height)  # window that shows it all
    if "zoom" in config.motions:
        close = still_w * float(rng.uniform(*CLOSE_UP))
        widths = (close, whole) if not zoom_in else (whole, close)
    else:
        widths = (still_w * PAN_WIDTH,) * 2
    # Aim at words: IC15 text gathers in a small part of the photo, and a camera that pans over
    # empty walls makes a clip with nothing to score. Centres are clamped to the still later.
    aims = [w.polygon.mean(axis=0) for w in still.words if not w.dont_care]
    aims = np.array(aims) if aims else np.array([[still_w / 2, still_h / 2]])
    jitter = rng.uniform(-0.15, 0.15, (2, 2)) * [still_w, still_h]
    if "pan" in config.motions:
        centres = aims[rng.integers(len(aims), size=2)] + jitter
    else:
        centres = aims[[int(rng.integers(len(aims)))] * 2] + jitter[:1]
    return np.array([widths[0], *centres[0]]), np.array([widths[1], *centres[1]])


def _matrix(
    config: CameraClipConfig,
    size: tuple[int, int],
    path: tuple[np.ndarray, np.ndarray],
    t: float,
    rng: np.random.Generator,
) -> np.ndarray:
    window_w, cx, cy = path[0] + (path[1] - path[0]) * t
    scale = config.width / window_w
    half = np.array([config.width, config.height]) / (2 * scale)  # half the window, still pixels
    centre = np.empty(2)
    for axis, c in enumerate((cx, cy)):
        # Keep the window on the still; one larger than the still is centred (letterbox).
        lo, hi = half[axis], size[axis] - half[axis]
        centre[axis] = np.clip(c, lo, hi) if lo <= hi else size[axis] / 2
    shift = np.array([config.width, config.height]) / 2 - scale * centre
    if "shake" in config.motions:
        shift += np.clip(rng.normal(0, SHAKE_SIGMA, 2), -3 * SHAKE_SIGMA, 3 * SHAKE_SIGMA)
    return np.array([[scale, 0, shift[0]], [0, scale, shift[1]]])


def render_frame(
    stills: Sequence[Still], view: View, config: CameraClipConfig, first_ids: Sequence[int]
) -> tuple[np.ndarray, list[GroundTruthObject]]:
    """Frame pixels (RGB uint8) and its objects, sorted by track id."""
    still = stills[view.still]
    # Linear interpolation is blurry enough when zoomed out 2x; what matters is that it uses
    # the same matrix as the quads.
    frame = cv2.warpAffine(
        still.image,
        view.matrix,
        (config.width, config.height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    objects = []
    for number, word in enumerate(still.words):
        quad = word.polygon @ view.matrix[:, :2].T + view.matrix[:, 2]
        obj = _frame_object(first_ids[view.still] + number, word.text, quad, frame.shape)
        if obj is not None:
            objects.append(obj)
    return frame, objects


def _frame_object(
    track_id: int, text: str, quad: np.ndarray, shape: tuple[int, ...]
) -> GroundTruthObject | None:
    """synth_video's rule: wholly outside -> None; partly outside or `###` -> don't-care."""
    height, width = shape[:2]
    if (quad.max(axis=0) < 0).any() or (quad.min(axis=0) > [width - 1, height - 1]).any():
        return None  # covers no pixel centre
    inside = bool((quad >= -0.5).all() and (quad <= [width - 0.5, height - 0.5]).all())
    dont_care = text == DONT_CARE or not inside
    return GroundTruthObject(track_id, quad.astype(np.float32), text, dont_care)


def make_camera_clip(
    image_paths: Sequence[str | Path],
    gt_paths: Sequence[str | Path],
    out_mp4: str | Path,
    config: CameraClipConfig | None = None,
) -> Path:
    """Write `out_mp4` (H.264) and its ground truth beside it (`.json`); returns the JSON path.

    Args:
        image_paths: the stills, in the order the shots visit them (with `cut`, shot k shows
            still k modulo their number; without it only the first is used).
        gt_paths: their ICDAR2015 ground-truth files, one per image.
        out_mp4: where the video goes; the ground truth is written to the same stem + `.json`.
        config: size, rate, length, seed and motions; the same config gives the same bytes.
    """
    config = config or CameraClipConfig()
    check_size(VideoConfig(config.width, config.height, config.fps, config.seconds))
    if not image_paths or len(image_paths) != len(gt_paths):
        raise ClipSpotError(f"{out_mp4}: need one ground-truth file per still (and one still)")
    if "cut" not in config.motions:
        image_paths, gt_paths = image_paths[:1], gt_paths[:1]
    stills = [load_still(i, g) for i, g in zip(image_paths, gt_paths, strict=True)]
    first_ids = np.cumsum([1] + [len(s.words) for s in stills[:-1]]).tolist()
    views = plan_views(config, stills)
    out_mp4 = Path(out_mp4)
    size = (config.width, config.height)
    per_frame = encode_h264(
        out_mp4, size, config.fps, (render_frame(stills, v, config, first_ids) for v in views)
    )
    pts = read_back_pts(out_mp4)
    if len(pts) != len(per_frame):
        raise RuntimeError(f"{out_mp4}: wrote {len(per_frame)} frames, decoded {len(pts)}")
    frames = tuple(
        FrameGroundTruth(i, p, objs) for i, (p, objs) in enumerate(zip(pts, per_frame, strict=True))
    )
    tracks = {o.track_id: o.text for f in frames for o in f.objects}  # only words ever seen
    gt = VideoGroundTruth(
        out_mp4.name, config.width, config.height, float(config.fps), frames, tracks
    )
    json_path = out_mp4.with_suffix(".json")
    write_video_gt(gt, json_path)
    return json_path


def set_stills(ic15_root: str | Path, split: str) -> list[int]:
    """Numbers of the stills of a clip set with enough legible words, in numeric order."""
    if split not in SPLITS:
        raise ClipSpotError(f"--split {split!r}: choose tune (img_801..900) or report (901..1000)")
    root = Path(ic15_root)
    if not (root / "images").is_dir() or not (root / "gt").is_dir():
        raise ClipSpotError(f"{root}: not an IC15 folder (expected images/ and gt/ inside)")
    first, last = SPLITS[split]
    chosen = []
    for number in range(first, last + 1):
        image = root / "images" / f"img_{number}.jpg"
        if not image.is_file():
            continue
        words = read_icdar_gt(icdar_gt_path(image))
        heights = [np.ptp(w.polygon[:, 1]) for w in words if not w.dont_care]
        if sum(h >= MIN_WORD_HEIGHT for h in heights) >= MIN_LEGIBLE_WORDS:
            chosen.append(number)
    if not chosen:
        raise ClipSpotError(f"{root}: no img_{first}..img_{last} with legible words")
    return chosen


def camera_clip_set(
    ic15_root: str | Path,
    split: str,
    out_dir: str | Path,
    size: tuple[int, int] = (640, 360),
    count: int = 10,
    seconds: float = 6.0,
    seed: int = 0,
    config: CameraClipConfig | None = None,
) -> list[Path]:
    """Write the fixed clip set `camera_{split}_{i}.mp4/.json` (i from 0); returns the JSONs.

    Stills come from `set_stills` in an order shuffled once by `seed`; clip i takes the next
    `seconds / shot_seconds` of them (wrapping around), so clips share no still until the set
    runs out. Clip i's camera is seeded by (seed, i). `config` supplies fps, motions and shot
    length; its size, length and seed are replaced by the arguments.
    """
    if count < 1:
        raise ClipSpotError(f"--count {count}: must be at least 1")
    numbers = set_stills(ic15_root, split)
    order = np.random.default_rng([seed, 3]).permutation(numbers).tolist()
    base = replace(config or CameraClipConfig(), width=size[0], height=size[1], seconds=seconds)
    shots = max(1, math.ceil(seconds / base.shot_seconds)) if "cut" in base.motions else 1
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(ic15_root)
    written = []
    for index in range(count):
        picks = [order[(index * shots + k) % len(order)] for k in range(shots)]
        images = [root / "images" / f"img_{n}.jpg" for n in picks]
        clip = replace(base, seed=seed * 1000 + index)
        out = out_dir / f"camera_{split}_{index:03d}.mp4"
        written.append(make_camera_clip(images, [icdar_gt_path(p) for p in images], out, clip))
    return written
