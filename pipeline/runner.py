"""The frame loop every caller shares: spot keyframes, carry tracks between them, track.

    runner = VideoRunner(spotter, RunnerConfig(detect_every=3), source="street.mp4")
    for result in runner.run(VideoReader("street.mp4")):   # FrameResult per frame, in order
        ...
    events = runner.finish()                               # the final "ended" events

Spotting and tracking are separate steps so a caller can spot elsewhere: the Ray service sends
keyframes to a batched spotter deployment and feeds the answers back with `track_frame`:

    if runner.is_keyframe(frame.index):
        instances = await spotter_handle.spot.remote(frame.image)
    result = runner.track_frame(frame, instances if keyframe else None)

The CLI and the embedded service call `run`/`spot_frames` + `track_frame` on the same object,
so all three paths produce the same per-frame results.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pipeline.track import TextTracker, TrackerConfig
from pipeline.types import FrameResult, TextInstance, TrackEvent, VideoFrame


class SpotsImages(Protocol):
    """What the runner needs from a spotter (pipeline.spotter.Spotter satisfies it)."""

    def spot(
        self, images: Sequence[np.ndarray], prompt_embedding: np.ndarray | None = None
    ) -> list[list[TextInstance]]: ...


@dataclass(frozen=True)
class RunnerConfig:
    """detect_every: spot one frame in k (frame index multiple of k) and carry the tracks
        over the others; k > 1 divides the model's cost by k, at the price of boxes that lag
        on fast or accelerating motion and words that appear up to k-1 frames late.
    batch_size: keyframes per spotter call. Larger batches use the model better (GPU) but
        delay results by up to batch_size * detect_every frames; use 1 for live streams.
    max_buffered: frames held while a batch fills, bounding memory when k is large.
    tracker: the per-stream tracker's parameters.
    """

    detect_every: int = 1
    batch_size: int = 1
    max_buffered: int = 64
    tracker: TrackerConfig = field(default_factory=TrackerConfig)

    def __post_init__(self) -> None:
        if self.detect_every < 1 or self.batch_size < 1 or self.max_buffered < 1:
            raise ValueError("detect_every, batch_size and max_buffered must be >= 1")


class VideoRunner:
    """Runs one stream (video file, URL, or a gRPC stream's decoded frames)."""

    def __init__(
        self,
        spotter: SpotsImages | None,
        config: RunnerConfig | None = None,
        source: str = "",
        prompt_embedding: np.ndarray | None = None,
    ) -> None:
        self.spotter = spotter  # None when spotting happens elsewhere (Ray deployment)
        self.config = config or RunnerConfig()
        self.source = source
        self.prompt_embedding = prompt_embedding
        self.tracker = TextTracker(self.config.tracker)
        self._events: list[TrackEvent] = []
        self.frames_spotted = 0
        self.frames_seen = 0

    def is_keyframe(self, frame_index: int) -> bool:
        return frame_index % self.config.detect_every == 0

    def spot_frames(self, frames: Sequence[VideoFrame]) -> list[list[TextInstance]]:
        """Spot a batch of frames in one model call."""
        if self.spotter is None:
            raise RuntimeError("this runner has no spotter: spot elsewhere and call track_frame")
        if not frames:
            return []
        images = [f.image for f in frames]
        if self.prompt_embedding is None:
            return self.spotter.spot(images)
        return self.spotter.spot(images, prompt_embedding=self.prompt_embedding)

    def track_frame(
        self,
        frame: VideoFrame,
        instances: Sequence[TextInstance] | None,
        dropped: bool = False,
    ) -> FrameResult:
        """Track one frame: with its spotted instances, or None to carry the live tracks
        (a non-keyframe, or a frame the service dropped). Frames must come in order."""
        self.frames_seen += 1
        if instances is None:
            tracked = self.tracker.carry(frame.index, frame.pts)
        else:
            self.frames_spotted += 1
            tracked, events = self.tracker.update(frame.index, frame.pts, list(instances))
            self._events.extend(events)
        return FrameResult(self.source, frame.index, frame.pts, tracked, dropped=dropped)

    def take_events(self) -> list[TrackEvent]:
        """The track events produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    def finish(self) -> list[TrackEvent]:
        """End the stream: pending events plus an "ended" event for every live track."""
        self._events.extend(self.tracker.finish())
        return self.take_events()

    def run(self, frames: Iterable[VideoFrame]) -> Iterator[FrameResult]:
        """Spot and track a whole stream, batching keyframes; one result per frame, in order."""
        pending: list[VideoFrame] = []
        keyframes = 0
        for frame in frames:
            pending.append(frame)
            keyframes += self.is_keyframe(frame.index)
            if keyframes >= self.config.batch_size or len(pending) >= self.config.max_buffered:
                yield from self._flush(pending)
                pending, keyframes = [], 0
        yield from self._flush(pending)

    def _flush(self, frames: list[VideoFrame]) -> Iterator[FrameResult]:
        keyframes = [f for f in frames if self.is_keyframe(f.index)]
        spotted = dict(zip((f.index for f in keyframes), self.spot_frames(keyframes), strict=True))
        for frame in frames:
            yield self.track_frame(frame, spotted.get(frame.index))


def run_images(
    spotter: SpotsImages,
    images: Iterable[tuple[str, np.ndarray]],
    batch_size: int = 1,
    prompt_embedding: np.ndarray | None = None,
) -> Iterator[FrameResult]:
    """Spot still images (frame 0, pts None, no tracking) in batches: (source, rgb) -> result."""
    batch: list[tuple[str, np.ndarray]] = []

    def flush() -> Iterator[FrameResult]:
        arrays = [image for _, image in batch]
        if prompt_embedding is None:
            found = spotter.spot(arrays)
        else:
            found = spotter.spot(arrays, prompt_embedding=prompt_embedding)
        for (source, _), instances in zip(batch, found, strict=True):
            yield FrameResult(source, 0, None, tuple(instances))

    for item in images:
        batch.append(item)
        if len(batch) >= batch_size:
            yield from flush()
            batch = []
    if batch:
        yield from flush()
