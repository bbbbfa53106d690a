"""One video file or stream URL through the frame loop: what `clipspot spot VIDEO` and
`clipspot.spot_video` both run.

    job = VideoJob(spotter, "street.mp4", runner_config(detect_every=5))
    for item in job.items():            # a frame's FrameResult, then the TrackEvents it caused
        ...
    job.captions.write("street.vtt")    # one cue per track (pipeline/captions.py)

The items come in the order a gRPC stream sends them (services/stream_core.py): each frame's
result, then the track events its spotting produced; after the last frame, the `ended` events
of the tracks still live. So a caller handles a local video and a served one alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pipeline.captions import TrackCaptions, caption_format
from pipeline.decode import VideoInfo, input_kind
from pipeline.errors import ClipSpotError
from pipeline.live_source import DEFAULT_RECONNECT_S, open_video
from pipeline.runner import EVERY_FRAME, RunnerConfig, SpotsImages, VideoRunner
from pipeline.types import FrameResult, TrackEvent, VideoFrame

KeyframeMode = Literal["adaptive", "fixed"]


def runner_config(
    detect_every: int = RunnerConfig.detect_every,
    keyframes: KeyframeMode = "adaptive",
    every_frame: bool = False,
    batch_size: int = 1,
) -> RunnerConfig:
    """The frame loop's settings from `clipspot spot`'s flags (see docs/video.md).

    Args:
        detect_every: at most this many frames between keyframes.
        keyframes: "adaptive" also detects at once after a cut, a large motion or lost words;
            "fixed" detects exactly every `detect_every`-th frame.
        every_frame: detect and read every frame (the reference for accuracy; slowest).
        batch_size: keyframes per model call.
    """
    if every_frame:
        return replace(EVERY_FRAME, batch_size=batch_size)
    return RunnerConfig(
        detect_every=detect_every, adaptive=keyframes == "adaptive", batch_size=batch_size
    )


class VideoJob:
    """A video opened for spotting (a bad path fails here), its runner, and the captions of
    what has been yielded so far. A stream URL reconnects for `reconnect_for_s` after a drop
    (pipeline/live_source.py; 0: it ends at the first drop)."""

    def __init__(
        self,
        spotter: SpotsImages,
        source: str | Path,
        config: RunnerConfig | None = None,
        threads: int = 0,
        reconnect_for_s: float = DEFAULT_RECONNECT_S,
    ) -> None:
        self.source = str(source)
        self.reader = open_video(self.source, threads, reconnect_for_s)
        self.runner = VideoRunner(spotter, config, source=self.source)
        info = self.reader.info
        frame_s = 1 / info.fps if info.fps else None
        self.captions = TrackCaptions((info.width, info.height), frame_s)

    @property
    def info(self) -> VideoInfo:
        return self.reader.info

    def items(
        self, frames: Iterable[VideoFrame] | None = None
    ) -> Iterator[FrameResult | TrackEvent]:
        """Every frame's result, each followed by its track events, then the final `ended`s.

        `frames` defaults to the reader's; a caller that also needs the pixels (to render)
        passes the reader's frames through its own generator.
        """
        for result in self.runner.run(self.reader if frames is None else frames):
            yield from self._noted([result, *self.runner.take_events()])
        yield from self._noted(self.runner.finish())

    def _noted(self, items: list[FrameResult | TrackEvent]) -> list[FrameResult | TrackEvent]:
        for item in items:
            self.captions.add(item)
        return items


def spot_video(
    path: str | Path,
    spotter: SpotsImages | None = None,
    *,
    detect_every: int = RunnerConfig.detect_every,
    keyframes: KeyframeMode = "adaptive",
    every_frame: bool = False,
    batch_size: int = 1,
    threads: int = 0,
    captions: str | Path | None = None,
    on_event: Callable[[TrackEvent], None] | None = None,
    reconnect_for_s: float = DEFAULT_RECONNECT_S,
) -> Iterator[FrameResult]:
    """Spot and track a video file or stream URL: one FrameResult per frame, in order.

    The same frame loop as `clipspot spot VIDEO`. The video is opened at once (a bad path
    raises ClipSpotError here); frames are decoded and spotted as the iterator is consumed.

    Args:
        path: a video file (anything FFmpeg reads) or a stream URL (rtsp://, http://, ...).
        spotter: a loaded `Spotter` (reuse one across videos); default: the shipped weights.
        detect_every, keyframes, every_frame, batch_size: the keyframe mode, as in
            `runner_config`.
        threads: decoder threads (0: FFmpeg's choice).
        captions: also write a `.vtt` or `.srt` file here, once the video has been read to
            its end.
        on_event: called with each TrackEvent (started / updated / ended) as it happens.
        reconnect_for_s: a stream URL that drops is reopened for this long (frame numbers
            and pts go on rising; 0: end at the drop); see pipeline/live_source.py.
    """
    if captions is not None:
        caption_format(captions)  # a bad suffix fails before any work
    if input_kind(str(path)) != "video":
        raise ClipSpotError(f"{path}: not a video file or stream URL")
    if spotter is None:
        from pipeline.spotter import Spotter  # torch: imported only when needed

        spotter = Spotter.load()
    config = runner_config(detect_every, keyframes, every_frame, batch_size)
    job = VideoJob(spotter, path, config, threads, reconnect_for_s)
    return _frames(job, captions, on_event)


def _frames(
    job: VideoJob,
    captions: str | Path | None,
    on_event: Callable[[TrackEvent], None] | None,
) -> Iterator[FrameResult]:
    for item in job.items():
        if isinstance(item, FrameResult):
            yield item
        elif on_event is not None:
            on_event(item)
    if captions is not None:
        job.captions.write(captions)
