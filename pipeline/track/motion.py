"""Follow text polygons from frame to frame by image motion (sparse optical flow).

    follower = MotionFollower(MotionConfig())   # one per stream
    follower.reset(keyframe)                    # after spotting a frame
    step = follower.follow(next_frame, polygons)  # polygons as they were on the previous frame
    step.results[i].polygon  /  step.results[i].lost
    if needs_keyframe(step.motion, width): ...  # a cut or a big move: spot this frame

Each `follow` call finds corners (`cv2.goodFeaturesToTrack`) on the previous frame, shrunk to
`work_width` pixels wide and grey, in and around every polygon plus a sample over the
whole frame, tracks them to the new frame with pyramidal Lucas-Kanade forwards and backwards,
and keeps the points that come back to where they started (forward-backward check). A polygon
with enough points of its own moves by a RANSAC similarity transform of them
(`cv2.estimateAffinePartial2D`); one with too few (a plain sign, a tiny word) moves by the
global similarity of all points. The new frame becomes the previous one.

`GlobalMotion` summarises the frame (median displacement, share of points kept, RANSAC inliers,
scale change); `looks_like_cut` and `needs_keyframe` turn it into a decision with the thresholds
documented on `MotionConfig`. Polygons come and go in the caller's original pixel coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

_LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03)


@dataclass(frozen=True)
class MotionConfig:
    """Flow and decision parameters (distances in pixels of the shrunk `work_width` frame).

    work_width: frames are shrunk to this width before anything else; smaller is faster but
        loses small words' texture.
    corners_per_polygon / global_corners: most corners taken in and around one polygon / over
        the whole frame (the global model's sample).
    lk_window / lk_levels: Lucas-Kanade window side and pyramid levels above the base; the
        largest step followed is about lk_window / 2 * 2**lk_levels work pixels a frame
        (22, i.e. 44 original pixels at 640 wide, with the defaults).
    margin: the search area around a polygon grows by this share of its height on every side
        (at least 3 px): the background next to a word moves with it and is better textured.
    fb_max_error: a point is kept only if tracking it forwards and back lands within this.
    min_points: a polygon needs this many kept points for its own transform.
    max_scale_gap: a polygon's own scale change may differ from the global one by this factor
        (log scale) before it is distrusted and the global motion used instead.
    min_visible: a moved polygon with less of its bounding box inside the frame is lost.
    min_kept_share: a polygon that had `min_points` corners but kept fewer than this share of
        them is lost (occluded, or it changed beyond recognition).
    cut_kept / cut_inliers: `looks_like_cut` when fewer than `cut_kept` of the points survive
        the forward-backward check, or fewer than `cut_inliers` of those fit one similarity.
    keyframe_shift / keyframe_scale: `needs_keyframe` also when the median displacement
        exceeds `keyframe_shift` of the frame width, or the scale changes by more than
        `keyframe_scale` (relative), in one step.
    """

    work_width: int = 320
    corners_per_polygon: int = 8
    global_corners: int = 80
    lk_window: int = 11
    lk_levels: int = 2
    margin: float = 0.5
    fb_max_error: float = 0.7
    min_points: int = 5
    max_scale_gap: float = 0.15
    min_visible: float = 0.25
    min_kept_share: float = 0.2
    cut_kept: float = 0.4
    cut_inliers: float = 0.5
    keyframe_shift: float = 0.1
    keyframe_scale: float = 0.1


@dataclass(frozen=True)
class GlobalMotion:
    """What the whole frame did between the previous frame and this one.

    shift: median point displacement (dx, dy), original pixels.
    scale: scale change of the global similarity (1.0 = none; nan when it could not be fitted).
    kept: share of tracked points that passed the forward-backward check (0..1).
    inliers: share of kept points that fit the global similarity (0..1).
    points: number of points tracked.
    matrix: the global similarity (2x3, original pixels, previous -> this frame) or None.
    """

    shift: tuple[float, float]
    scale: float
    kept: float
    inliers: float
    points: int
    matrix: np.ndarray | None


@dataclass(frozen=True, eq=False)
class FollowResult:
    """One polygon on the new frame: `polygon` (N, 2) float32, original pixels, unless `lost`.

    `own` says whether it moved by its own points (True) or by the global motion (False).
    A lost polygon keeps its previous position in `polygon`.
    """

    polygon: np.ndarray
    lost: bool
    own: bool


@dataclass(frozen=True)
class MotionStep:
    results: list[FollowResult]  # one per input polygon, in order
    motion: GlobalMotion


def looks_like_cut(motion: GlobalMotion, config: MotionConfig | None = None) -> bool:
    """True when the points no longer match: a hard cut (or a frame too blurred to follow)."""
    config = config or MotionConfig()
    return (
        motion.matrix is None
        or motion.kept < config.cut_kept
        or (motion.inliers < config.cut_inliers)
    )


def needs_keyframe(motion: GlobalMotion, width: int, config: MotionConfig | None = None) -> bool:
    """True on a cut, or when one step moved or zoomed so far that followed boxes may drift."""
    config = config or MotionConfig()
    if looks_like_cut(motion, config):
        return True
    moved = math.hypot(*motion.shift) > config.keyframe_shift * width
    return moved or abs(motion.scale - 1) > config.keyframe_scale


class MotionFollower:
    """Moves polygons by sparse optical flow; state is the previous shrunk grey frame only."""

    def __init__(self, config: MotionConfig | None = None) -> None:
        self.config = config or MotionConfig()
        self._previous: np.ndarray | None = None
        self._factor = np.ones(2, np.float32)  # work pixels per original pixel, (x, y)

    @property
    def ready(self) -> bool:
        """Whether a previous frame exists to follow from."""
        return self._previous is not None

    def reset(self, frame: np.ndarray) -> None:
        """Start from `frame` (grey, RGB or BGR uint8), e.g. a freshly spotted keyframe."""
        self._previous = self._prepare(frame)

    def follow(self, frame: np.ndarray, polygons: Sequence[np.ndarray]) -> MotionStep:
        """Move `polygons` (as on the previous frame) onto `frame`, which becomes the previous."""
        if self._previous is None:
            raise RuntimeError("MotionFollower.follow before reset: no previous frame")
        previous, current = self._previous, self._prepare(frame)
        self._previous = current
        work = [np.asarray(p, np.float32).reshape(-1, 2) * self._factor for p in polygons]
        if previous.shape != current.shape:  # a new stream geometry is a cut
            return MotionStep([_lost(p / self._factor) for p in work], _NO_MOTION)
        starts, owners = self._corners(previous, work)
        ends, good = self._track(previous, current, starts)
        motion, matrix = self._global(starts, ends, good)
        results = [
            self._move(
                poly,
                starts[owners == i],
                ends[owners == i],
                good[owners == i],
                matrix,
                current.shape,
            )
            for i, poly in enumerate(work)
        ]
        return MotionStep(results, motion)

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        height, width = grey.shape
        size = (self.config.work_width, max(8, round(height * self.config.work_width / width)))
        self._factor = np.float32([size[0] / width, size[1] / height])
        return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)

    def _corners(
        self, grey: np.ndarray, polygons: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Corners of the whole frame (owner -1) and around each polygon (owner = its index)."""
        config = self.config
        found = [_find(grey, config.global_corners, 8)]
        owners = [np.full(len(found[0]), -1)]
        height, width = grey.shape
        for index, poly in enumerate(polygons):
            lo, hi = poly.min(axis=0), poly.max(axis=0)
            grow = max(3.0, config.margin * float(hi[1] - lo[1]))
            x0, y0 = np.maximum(np.floor(lo - grow), 0).astype(int)
            x1, y1 = np.minimum(np.ceil(hi + grow), [width, height]).astype(int)
            if x1 - x0 < 3 or y1 - y0 < 3:
                continue  # off the frame already
            points = _find(grey[y0:y1, x0:x1], config.corners_per_polygon, 2) + np.float32([x0, y0])
            found.append(points.astype(np.float32))
            owners.append(np.full(len(points), index))
        return np.concatenate(found).reshape(-1, 2), np.concatenate(owners)

    def _track(
        self, previous: np.ndarray, current: np.ndarray, starts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """End points and a mask of the points that survive the forward-backward check."""
        if len(starts) == 0:
            return starts, np.zeros(0, bool)
        side = self.config.lk_window
        lk = {"winSize": (side, side), "maxLevel": self.config.lk_levels, "criteria": _LK_CRITERIA}
        ends, ok, _ = cv2.calcOpticalFlowPyrLK(previous, current, starts, None, **lk)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(current, previous, ends, None, **lk)
        error = np.linalg.norm(back - starts, axis=1)
        good = (ok.ravel() == 1) & (ok_back.ravel() == 1) & (error < self.config.fb_max_error)
        return ends, good

    def _global(
        self, starts: np.ndarray, ends: np.ndarray, good: np.ndarray
    ) -> tuple[GlobalMotion, np.ndarray | None]:
        """The frame's summary (original pixels) and its similarity (work pixels) or None."""
        kept = int(good.sum())
        if kept < 3:
            return GlobalMotion(
                (0.0, 0.0), math.nan, kept / max(1, len(good)), 0.0, len(good), None
            ), None
        matrix, inlier = _similarity(starts[good], ends[good])
        shift = np.median(ends[good] - starts[good], axis=0) / self._factor
        scale = math.hypot(*matrix[:, 0]) if matrix is not None else math.nan
        inliers = float(inlier.mean()) if matrix is not None else 0.0
        original = _to_original(matrix, self._factor) if matrix is not None else None
        summary = GlobalMotion(
            (float(shift[0]), float(shift[1])),
            scale,
            kept / len(good),
            inliers,
            len(good),
            original,
        )
        return summary, matrix

    def _move(
        self,
        polygon: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        good: np.ndarray,
        fallback: np.ndarray | None,
        shape: tuple[int, int],
    ) -> FollowResult:
        config = self.config
        matrix, own = fallback, False
        # Points carried out of the frame are lost for flow but say nothing against the word:
        # only those the global motion keeps inside count towards `min_kept_share`.
        stays = (
            _inside(starts @ fallback[:, :2].T + fallback[:, 2], shape)
            if (fallback is not None)
            else np.ones(len(good), bool)
        )
        if stays.sum() >= config.min_points and good[stays].mean() < config.min_kept_share:
            return _lost(polygon / self._factor)
        if good.sum() >= config.min_points:
            local, _ = _similarity(starts[good], ends[good], 50)  # a few points: few draws
            if local is not None and _agrees(local, fallback, config.max_scale_gap):
                matrix, own = local, True
        if matrix is None:
            return _lost(polygon / self._factor)
        moved = polygon @ matrix[:, :2].T + matrix[:, 2]
        if _visible_share(moved, shape) < config.min_visible:
            return _lost(polygon / self._factor)
        return FollowResult((moved / self._factor).astype(np.float32), False, own)


_NO_MOTION = GlobalMotion((0.0, 0.0), math.nan, 0.0, 0.0, 0, None)


def _find(grey: np.ndarray, count: int, distance: int) -> np.ndarray:
    points = cv2.goodFeaturesToTrack(grey, count, 0.01, distance, blockSize=3)
    return np.zeros((0, 2), np.float32) if points is None else points.reshape(-1, 2)


def _similarity(
    starts: np.ndarray, ends: np.ndarray, iterations: int = 200
) -> tuple[np.ndarray | None, np.ndarray]:
    # 1 work pixel (2 original pixels at 640 wide) is about the flow's noise on text edges.
    matrix, inliers = cv2.estimateAffinePartial2D(
        starts, ends, method=cv2.RANSAC, ransacReprojThreshold=1.0, maxIters=iterations
    )
    return matrix, (inliers.ravel() == 1 if inliers is not None else np.zeros(len(starts), bool))


def _agrees(local: np.ndarray, fallback: np.ndarray | None, gap: float) -> bool:
    """A word's own fit is trusted unless its zoom disagrees with the whole frame's."""
    if fallback is None:
        return True
    ratio = math.hypot(*local[:, 0]) / max(1e-6, math.hypot(*fallback[:, 0]))
    return abs(math.log(max(ratio, 1e-6))) <= gap


def _to_original(matrix: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """A work-pixel transform expressed in original pixels: F^-1 M F."""
    to_work = np.diag([*factor, 1.0])
    full = np.vstack([matrix, [0, 0, 1]])
    return (np.linalg.inv(to_work) @ full @ to_work)[:2]


def _inside(points: np.ndarray, shape: tuple[int, int], border: float = 2.0) -> np.ndarray:
    height, width = shape
    return ((points >= border) & (points <= [width - 1 - border, height - 1 - border])).all(axis=1)


def _visible_share(polygon: np.ndarray, shape: tuple[int, int]) -> float:
    """Share of the polygon's bounding box inside the frame."""
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    area = float(np.prod(np.maximum(hi - lo, 1e-6)))
    inner = np.clip(np.minimum(hi, shape[::-1]) - np.maximum(lo, 0), 0, None)
    return float(np.prod(inner)) / area


def _lost(polygon: np.ndarray) -> FollowResult:
    return FollowResult(polygon.astype(np.float32), True, False)
