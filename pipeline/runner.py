"""The frame loop every caller shares: spot keyframes, follow words between them, track.

    runner = VideoRunner(spotter, RunnerConfig(detect_every=5), source="street.mp4")
    for result in runner.run(VideoReader("street.mp4")):   # FrameResult per frame, in order
        ...
    events = runner.finish()                               # the final "ended" events

Per frame, top to bottom (`run`, one frame at a time):
1. `is_keyframe`: detect on this frame? Every `detect_every`-th frame after the last keyframe,
   and at once (adaptive mode) when following the last frame said so: a scene cut, a large
   global motion, or most of the followed words lost.
2. Keyframe: the spotter detects; words that continue a track whose reading is still good and
   whose look has not changed keep the track's voted text; only new, unsure or changed words
   are read (`_spot_keyframe`). The tracker then associates and votes (`track_frame`).
3. Other frames: every followed word is moved by image motion (`pipeline/track/motion.py`,
   sparse optical flow), or marked lost when its points are; then the tracks are carried.

The runner needs two calls from its spotter, `detect` and `words` (pipeline.spotter.Spotter
has them). The services give each stream a runner whose spotter is a thin bridge to the shared,
batched model (services/engines.py), so a gRPC stream takes exactly this path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from pipeline.batcher import same_size_groups
from pipeline.model.postprocess import Detection
from pipeline.track import TextTracker, TrackerConfig
from pipeline.track.matching import polygon_iou
from pipeline.track.motion import MotionFollower, needs_keyframe
from pipeline.types import FrameResult, TextInstance, TrackEvent, VideoFrame


class SpotsImages(Protocol):
    """What the runner needs from a spotter (pipeline.spotter.Spotter satisfies it)."""

    def detect(
        self, images: Sequence[np.ndarray], prompt_embedding: np.ndarray | None = None
    ) -> list[list[Detection]]: ...

    def words(
        self, image: np.ndarray, detections: Sequence[Detection]
    ) -> list[TextInstance | None]: ...


@dataclass(frozen=True)
class RunnerConfig:
    """detect_every: at most this many frames between keyframes (k). 1 detects every frame.
    adaptive: also detect at once after a scene cut, a large motion, or when most followed
        words were lost (one frame at a time only: `batch_size` 1).
    follow_motion: move words between keyframes by image motion; off, by constant velocity.
    read_changes_only: on keyframes, read only new, unsure or changed words (a local
        spotter with detect/read, `batch_size` 1); off, every detected word is read.
    reread_change: a word whose look changed by more than this (1 - normalised correlation
        of its grey patch with the one last read, 0-2) is read again. Between keyframes 5
        frames apart on the tune clips, the same word changed by 0.17 (median) and 0.35 (75th
        percentile), so about a quarter of the followed words are re-read per keyframe.
    reread_below: a track whose last score is below this counts as unsure, and is re-read
        whenever it shows a new view at all (change > `new_view`)...
    max_reads: ...at most this many times. A word dropped as unreadable is not read again
        until it changes by `reread_change` (the same pixels give the same read).
    batch_size: keyframes per spotter call (a GPU). Larger batches delay results and turn
        the adaptive triggers and the read policy off.
    max_buffered: frames held while a batch fills, bounding memory when k is large.
    min_keyframe_gap_s: keyframes at least this many seconds of pts apart (a stream's
        `sampling.max_fps`); 0: no cap.
    """

    detect_every: int = 5
    adaptive: bool = True
    follow_motion: bool = True
    read_changes_only: bool = True
    reread_change: float = 0.35
    reread_below: float = 0.8
    new_view: float = 0.05
    max_reads: int = 4
    batch_size: int = 1
    max_buffered: int = 64
    min_keyframe_gap_s: float = 0.0
    tracker: TrackerConfig = field(default_factory=TrackerConfig)

    def __post_init__(self) -> None:
        if self.detect_every < 1 or self.batch_size < 1 or self.max_buffered < 1:
            raise ValueError("detect_every, batch_size and max_buffered must be >= 1")


EVERY_FRAME = RunnerConfig(detect_every=1, adaptive=False, read_changes_only=False)


class VideoRunner:
    """Runs one stream (video file, URL, or a gRPC stream's decoded frames)."""

    def __init__(
        self,
        spotter: Any | None,
        config: RunnerConfig | None = None,
        source: str = "",
        prompt_embedding: np.ndarray | None = None,
    ) -> None:
        self.spotter = spotter  # None when spotting happens elsewhere (the services)
        self.config = config or RunnerConfig()
        self.source = source
        self.prompt_embedding = prompt_embedding
        self.tracker = TextTracker(self.config.tracker)
        self.follower = MotionFollower() if self.config.follow_motion else None
        self._events: list[TrackEvent] = []
        self._last_key: int | None = None
        self._last_key_pts: float | None = None
        self._want_key = False
        self._read_memory: dict[int, tuple[np.ndarray, int]] = {}  # track -> (patch, reads)
        self._rejected: list[tuple[np.ndarray, np.ndarray]] = []  # (polygon, patch) dropped
        self.frames_spotted = 0
        self.frames_seen = 0
        self.words_read = 0
        self.seconds = {"detect": 0.0, "read": 0.0, "motion": 0.0, "track": 0.0}

    def is_keyframe(self, frame_index: int, pts: float | None = None) -> bool:
        k = self.config.detect_every
        if not self.config.adaptive or self.config.batch_size > 1:
            due = frame_index % k == 0
        else:
            due = self._last_key is None or frame_index - self._last_key >= k or self._want_key
        return due and not self._too_soon(pts)

    def _too_soon(self, pts: float | None) -> bool:
        """Within `min_keyframe_gap_s` of the last keyframe's pts (small tolerance: 30 fps pts
        are not exact multiples of 1/30 s)."""
        gap = self.config.min_keyframe_gap_s
        if not gap or pts is None or self._last_key_pts is None:
            return False
        return pts - self._last_key_pts < gap - 1e-6

    def spot_frames(self, frames: Sequence[VideoFrame]) -> list[list[TextInstance]]:
        """Spot a batch of frames (every detected word read), same-size frames per call."""
        if self.spotter is None:
            raise RuntimeError("this runner has no spotter: spot elsewhere and call track_frame")
        start = time.perf_counter()
        found = spot_images(self.spotter, [f.image for f in frames], self.prompt_embedding)
        self.seconds["detect"] += time.perf_counter() - start
        return found

    def track_frame(
        self,
        frame: VideoFrame,
        instances: Sequence[TextInstance] | None,
        dropped: bool = False,
    ) -> FrameResult:
        """Track one frame: with its spotted instances, or None to follow the live tracks to
        it (a non-keyframe, or a frame the service dropped). Frames must come in order."""
        self.frames_seen += 1
        if instances is None:
            self._follow(frame)
            tracked = self.tracker.carry(frame.index, frame.pts)
        else:
            start = time.perf_counter()
            self.frames_spotted += 1
            self._last_key, self._want_key = frame.index, False
            self._last_key_pts = frame.pts if frame.pts is not None else self._last_key_pts
            tracked, events = self.tracker.update(frame.index, frame.pts, list(instances))
            self._events.extend(events)
            if self.follower is not None and has_pixels(frame):
                self.follower.reset(frame.image)
            self.seconds["track"] += time.perf_counter() - start
        return FrameResult(self.source, frame.index, frame.pts, tracked, dropped=dropped)

    def _follow(self, frame: VideoFrame) -> None:
        if self.follower is None or not has_pixels(frame):
            return  # a dropped frame, or Ray's tracker (no pixels): carried by velocity
        if not self.follower.ready:  # no keyframe yet (a service dropped the first frames)
            self.follower.reset(frame.image)
            return
        start = time.perf_counter()
        ids, polygons = self.tracker.followable()
        step = self.follower.follow(frame.image, polygons)
        moved = {i: (None if r.lost else r.polygon) for i, r in zip(ids, step.results, strict=True)}
        self.tracker.move(frame.index, moved)
        lost = sum(p is None for p in moved.values())
        if needs_keyframe(step.motion, frame.image.shape[1]) or (ids and 2 * lost > len(ids)):
            self._want_key = True
        self.seconds["motion"] += time.perf_counter() - start

    def take_events(self) -> list[TrackEvent]:
        """The track events produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    def finish(self) -> list[TrackEvent]:
        """End the stream: pending events plus an "ended" event for every live track."""
        self._events.extend(self.tracker.finish())
        return self.take_events()

    def run(self, frames: Iterable[VideoFrame]) -> Iterator[FrameResult]:
        """Spot and track a whole stream; one result per frame, in order."""
        if self.config.batch_size > 1:
            yield from self._run_batched(frames)
            return
        for frame in frames:
            yield self.step(frame)

    def step(self, frame: VideoFrame) -> FrameResult:
        """One frame with this runner's own spotter: spot it if it is a keyframe, else follow
        the tracks to it. Frames must come in order (`batch_size` 1)."""
        if self.is_keyframe(frame.index, frame.pts):
            return self._track_keyframe(frame)
        return self.track_frame(frame, None)

    def _track_keyframe(self, frame: VideoFrame) -> FrameResult:
        instances, read_patches = self._spot_keyframe(frame, self.config.read_changes_only)
        result = self.track_frame(frame, instances)
        for index, patch in read_patches.items():
            track_id = self.tracker.last_track_ids[index]
            reads = self._read_memory.get(track_id, (patch, 0))[1]
            self._read_memory[track_id] = (patch, reads + 1)
        live = set(self.tracker.live_track_ids)
        self._read_memory = {k: v for k, v in self._read_memory.items() if k in live}
        return result

    def _spot_keyframe(
        self, frame: VideoFrame, changes_only: bool
    ) -> tuple[list[TextInstance], dict]:
        """Detect, then read the words that need it (all of them unless `changes_only`); the
        others keep their track's voted text and score. Returns the instances and
        {instance index: patch} of those read. Same words and scores as `Spotter.spot` when
        every word is read."""
        spotter, image = self.spotter, frame.image
        start = time.perf_counter()
        (found,) = spotter.detect([image], self.prompt_embedding)  # type: ignore[union-attr]
        self.seconds["detect"] += time.perf_counter() - start
        polygons = [d.polygon for d in found]
        if changes_only:
            owners = self.tracker.owners(frame.index, polygons)
            patches = [word_patch(image, p) for p in polygons]
            skipped = self._still_rejected(polygons, patches)
            to_read = [
                i
                for i, owner in enumerate(owners)
                if i not in skipped and self._needs_read(owner, patches[i])
            ]
        else:  # every word is read: no pairing, no patches, no memory (the every-frame path)
            owners, patches, skipped = [None] * len(found), [None] * len(found), set()
            to_read = list(range(len(found)))
        start = time.perf_counter()
        words = spotter.words(image, [found[i] for i in to_read])  # type: ignore[union-attr]
        self.seconds["read"] += time.perf_counter() - start
        self.words_read += len(to_read)
        read = dict(zip(to_read, words, strict=True))
        instances, read_patches, rejected = [], {}, []
        for i, (detection, owner) in enumerate(zip(found, owners, strict=True)):
            if i in skipped:
                rejected.append((detection.polygon, patches[i]))
                continue
            if i in read:
                instance = read[i]
                if instance is None:
                    if changes_only:
                        rejected.append((detection.polygon, patches[i]))
                    continue
                if changes_only:
                    read_patches[len(instances)] = patches[i]
            else:
                text, score, _ = self.tracker.voted(owner)  # type: ignore[arg-type]
                instance = TextInstance(detection.polygon, text, score)
            instances.append(instance)
        self._rejected = rejected
        return instances, read_patches

    def _still_rejected(self, polygons: list[np.ndarray], patches: list[np.ndarray]) -> set[int]:
        """Detections where the last keyframe dropped an unreadable word that looks the same."""
        if not self._rejected or not polygons:
            return set()
        iou = polygon_iou([p for p, _ in self._rejected], polygons)
        return {
            i
            for r, (_, old) in enumerate(self._rejected)
            for i in np.flatnonzero(iou[r] >= 0.5).tolist()
            if patch_change(patches[i], old) <= self.config.reread_change
        }

    def _needs_read(self, owner: int | None, patch: np.ndarray) -> bool:
        memory = self._read_memory.get(owner) if owner is not None else None
        if memory is None:
            return True  # a new word, or one never read
        last_patch, reads = memory
        change = patch_change(patch, last_patch)
        if change > self.config.reread_change:
            return True  # it looks different: zoomed, turned, changed
        _, score, _ = self.tracker.voted(owner)  # type: ignore[arg-type]
        unsure = score < self.config.reread_below and reads < self.config.max_reads
        return unsure and change > self.config.new_view

    def _run_batched(self, frames: Iterable[VideoFrame]) -> Iterator[FrameResult]:
        pending: list[VideoFrame] = []
        keyframes = 0
        for frame in frames:
            pending.append(frame)
            keyframes += self.is_keyframe(frame.index, frame.pts)
            if keyframes >= self.config.batch_size or len(pending) >= self.config.max_buffered:
                yield from self._flush(pending)
                pending, keyframes = [], 0
        yield from self._flush(pending)

    def _flush(self, frames: list[VideoFrame]) -> Iterator[FrameResult]:
        keyframes = [f for f in frames if self.is_keyframe(f.index, f.pts)]
        spotted = dict(zip((f.index for f in keyframes), self.spot_frames(keyframes), strict=True))
        for frame in frames:
            yield self.track_frame(frame, spotted.get(frame.index))


def has_pixels(frame: VideoFrame) -> bool:
    """Services release a dropped frame's pixels (and Ray's tracker never gets them)."""
    return frame.image is not None and frame.image.size > 0


def patch_change(a: np.ndarray, b: np.ndarray) -> float:
    """1 - normalised correlation of two `word_patch`es: 0 identical, 1 unrelated."""
    return 1.0 - float(np.dot(a.ravel(), b.ravel()))


def word_patch(image: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """A word's look, cheaply: its bounding box in grey, 16x48, zero mean and unit norm, so
    the dot product of two patches is their normalised correlation (exposure changes cancel)."""
    x, y, w, h = cv2.boundingRect(np.asarray(polygon, dtype=np.float32))
    x0, y0 = max(x, 0), max(y, 0)
    crop = image[y0 : max(y0 + 1, y + h), x0 : max(x0 + 1, x + w)]
    if crop.size == 0:
        return np.zeros((16, 48), np.float32)
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (48, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
    grey -= grey.mean()
    return grey / max(float(np.linalg.norm(grey)), 1e-3)


def spot_images(
    spotter: SpotsImages, images: Sequence[np.ndarray], prompt_embedding: Any = None
) -> list[list[TextInstance]]:
    """Detect and read images, one detector call per group of same-size images
    (pipeline/batcher.py: padding would change a smaller image's words)."""
    results: list[list[TextInstance]] = [[] for _ in images]
    for indices in same_size_groups(images):
        group = [images[i] for i in indices]
        found = spotter.detect(group, prompt_embedding)
        for i, image, detections in zip(indices, group, found, strict=True):
            results[i] = [w for w in spotter.words(image, detections) if w is not None]
    return results


def run_images(
    spotter: SpotsImages,
    images: Iterable[tuple[str, np.ndarray]],
    batch_size: int = 1,
    prompt_embedding: np.ndarray | None = None,
) -> Iterator[FrameResult]:
    """Spot still images (frame 0, pts None, no tracking) in batches: (source, rgb) -> result."""
    batch: list[tuple[str, np.ndarray]] = []

    def flush() -> Iterator[FrameResult]:
        found = spot_images(spotter, [image for _, image in batch], prompt_embedding)
        for (source, _), instances in zip(batch, found, strict=True):
            yield FrameResult(source, 0, None, tuple(instances))

    for item in images:
        batch.append(item)
        if len(batch) >= batch_size:
            yield from flush()
            batch = []
    if batch:
        yield from flush()
