"""One stream's state machine, independent of the transport (grpc.aio or Ray Serve).

A stream is a StreamConfig followed by Chunk or Frame messages. This module turns that message
sequence into decoded, numbered, sampled frames, and turns spotted frames into tracked results:

    settings = parse_config(first_request)              # StreamError if missing or invalid
    source = FrameSource(settings)                      # decoder state for this stream
    frames = source.accept(request)                     # validated, decoded VideoFrames
    tracks = TrackStage(settings)                       # tracker state for this stream
    result, events = tracks.step(frame, instances)      # instances=None: not spotted, carried

Bad input raises `StreamError` (a ClipSpotError) whose message names the stream, the sequence
number and the problem; every transport maps it to INVALID_ARGUMENT and ends only that stream.
The asyncio driver that wires these stages to a spotter lives in services/stream_driver.py.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np

from pipeline.decode import StreamDecoder, decode_image_bytes
from pipeline.errors import ClipSpotError
from pipeline.runner import RunnerConfig, VideoRunner
from pipeline.track import TrackerConfig
from pipeline.types import FrameResult, TextInstance, TrackEvent, VideoFrame
from services.rpc.clipspot.v1 import spotting_pb2 as pb

_KINDS = {
    pb.INPUT_KIND_MPEGTS: "mpegts",
    pb.INPUT_KIND_FMP4: "fmp4",
    pb.INPUT_KIND_IMAGES: "images",
    pb.INPUT_KIND_RAW_RGB: "raw",
}
_POLICIES = {
    pb.DROP_POLICY_UNSPECIFIED: "none",
    pb.DROP_POLICY_NONE: "none",
    pb.DROP_POLICY_DROP_OLDEST: "drop_oldest",
    pb.DROP_POLICY_KEEP_LATEST: "keep_latest",
}
_PAYLOAD_FOR_KIND = {"mpegts": "chunk", "fmp4": "chunk", "images": "frame", "raw": "frame"}


class StreamError(ClipSpotError):
    """Bad input on one stream; the transport ends that stream with INVALID_ARGUMENT."""


@dataclass(frozen=True)
class SessionLimits:
    """What a server accepts from one stream (protects the process from one bad client)."""

    initial_credits: int = 8  # messages a client may send before the first frame is spotted
    default_queue: int = 8  # frames waiting for the spotter when the config says 0
    max_queue: int = 64
    max_raw_side: int = 8192
    max_prompt_chars: int = 1000


@dataclass(frozen=True)
class StreamSettings:
    """A validated StreamConfig, in plain Python."""

    stream_id: str
    kind: str  # "mpegts" | "fmp4" | "images" | "raw"
    raw_shape: tuple[int, int] | None  # (height, width) for "raw"
    prompt: str | None  # None: the model's default prompt
    detect_every: int  # >= 1
    max_fps: float  # 0: no cap
    drop_policy: str  # "none" | "drop_oldest" | "keep_latest"
    max_queue: int
    resume_from: int
    first_frame: int

    @property
    def label(self) -> str:
        return f"stream {self.stream_id!r}"


def parse_config(request: pb.StreamRequest, limits: SessionLimits | None = None) -> StreamSettings:
    """The first request of a stream -> settings; StreamError when it is not a usable config."""
    limits = limits or SessionLimits()
    which = request.WhichOneof("message")
    if which != "config":
        raise StreamError(
            f"stream: config missing: the first message must be a StreamConfig, got {_name(which)}"
        )
    config = request.config
    label = f"stream {config.stream_id!r}"
    if config.input_kind not in _KINDS:
        raise StreamError(f"{label}: config: input_kind is unspecified or unknown "
                          f"({config.input_kind}); use MPEGTS, FMP4, IMAGES or RAW_RGB")
    kind = _KINDS[config.input_kind]
    if config.drop_policy not in _POLICIES:
        raise StreamError(f"{label}: config: unknown drop_policy {config.drop_policy}")
    sampling = config.sampling
    if not math.isfinite(sampling.max_fps) or sampling.max_fps < 0:
        raise StreamError(f"{label}: config: sampling.max_fps must be >= 0, "
                          f"got {sampling.max_fps}")
    if config.max_queue > limits.max_queue:
        raise StreamError(f"{label}: config: max_queue {config.max_queue} is above this "
                          f"server's limit of {limits.max_queue}")
    if len(config.prompt) > limits.max_prompt_chars:
        raise StreamError(f"{label}: config: prompt is {len(config.prompt)} characters, "
                          f"the limit is {limits.max_prompt_chars}")
    return StreamSettings(
        stream_id=config.stream_id,
        kind=kind,
        raw_shape=_raw_shape(config, kind, label, limits),
        prompt=config.prompt or None,
        detect_every=max(1, sampling.detect_every),
        max_fps=sampling.max_fps,
        drop_policy=_POLICIES[config.drop_policy],
        max_queue=config.max_queue or limits.default_queue,
        resume_from=config.resume_from,
        first_frame=config.first_frame,
    )


def decode_spot_image(request: pb.SpotImageRequest, limits: SessionLimits) -> np.ndarray:
    """Validate a unary SpotImage request and decode its image (both transports call this)."""
    if not request.image:
        raise ClipSpotError("SpotImage: the request has no image bytes")
    if len(request.prompt) > limits.max_prompt_chars:
        raise ClipSpotError(f"SpotImage: prompt is {len(request.prompt)} characters, "
                            f"the limit is {limits.max_prompt_chars}")
    try:
        return decode_image_bytes(request.image)
    except ClipSpotError as err:
        raise ClipSpotError(f"SpotImage: undecodable image: {err}") from None


def _raw_shape(
    config: pb.StreamConfig, kind: str, label: str, limits: SessionLimits
) -> tuple[int, int] | None:
    if kind != "raw":
        return None
    width, height = config.raw_shape.width, config.raw_shape.height
    if not (0 < width <= limits.max_raw_side and 0 < height <= limits.max_raw_side):
        raise StreamError(f"{label}: config: RAW_RGB needs raw_shape width and height in "
                          f"1..{limits.max_raw_side}, got {width}x{height}")
    return height, width


def _name(which: str | None) -> str:
    return "an empty message" if which is None else f"a {which} message"


class FrameSource:
    """Validates sequence numbers and payloads, and decodes them into numbered frames.

    `accept` returns the frames a message completed (a video chunk may complete none or
    several); `finish` flushes the decoder at the end of the stream. Frame indices count
    presented frames from `first_frame`; pts are the container's (video) or the client's (frames).
    """

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.next_seq = settings.resume_from
        self.next_index = settings.first_frame
        self.consumed_seq: int | None = None  # last message fully decoded
        self._decoder = _open_decoder(settings)

    def accept(self, request: pb.StreamRequest) -> list[VideoFrame]:
        label = self.settings.label
        which = request.WhichOneof("message")
        expected = _PAYLOAD_FOR_KIND[self.settings.kind]
        if which == "config":
            raise StreamError(f"{label}: a second StreamConfig after seq {self.consumed_seq}; "
                              "send one config per stream")
        if which != expected:
            raise StreamError(f"{label}: expected a {expected} message for input kind "
                              f"{self.settings.kind}, got {_name(which)}")
        payload = getattr(request, which)
        if payload.seq != self.next_seq:
            raise StreamError(f"{label}: sequence gap: expected seq {self.next_seq}, "
                              f"got seq {payload.seq}")
        where = f"{label} seq {payload.seq}"
        if which == "chunk":
            frames = self._decode_chunk(payload.data, where)
        else:
            pts = payload.pts if payload.HasField("pts") else None
            frames = [VideoFrame(0, pts, self._decode_frame(payload.data, where))]
        self.next_seq += 1
        self.consumed_seq = payload.seq
        return self._number(frames)

    def finish(self) -> list[VideoFrame]:
        """Frames still inside the decoder when the client half-closes (or the server drains)."""
        if self._decoder is None or self.consumed_seq is None:
            self.discard()  # no bytes ever came: an empty stream, not a broken one
            return []
        where = f"{self.settings.label} at end of stream (after seq {self.consumed_seq})"
        try:
            frames = self._decoder.close()
            self._decoder = None
        except ClipSpotError as err:
            raise StreamError(f"{where}: {self._unlabel(err)}") from None
        return self._number(frames)

    def discard(self) -> None:
        """Stop the decoder's thread when the stream ends early (error, cancel)."""
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            with contextlib.suppress(ClipSpotError):
                decoder.close()

    def _number(self, frames: list[VideoFrame]) -> list[VideoFrame]:
        numbered = []
        for frame in frames:
            numbered.append(VideoFrame(self.next_index, frame.pts, frame.image))
            self.next_index += 1
        return numbered

    def _decode_chunk(self, data: bytes, where: str) -> list[VideoFrame]:
        try:
            return self._decoder.feed(data)
        except ClipSpotError as err:
            raise StreamError(f"{where}: {self._unlabel(err)}") from None

    def _unlabel(self, err: ClipSpotError) -> str:
        """The decoder's message without its stream-name prefix (`where` names the stream)."""
        message, prefix = str(err), f"{self.settings.label}: "
        return message[len(prefix):] if message.startswith(prefix) else message

    def _decode_frame(self, data: bytes, where: str) -> np.ndarray:
        if not data:
            raise StreamError(f"{where}: empty frame")
        shape = None if self.settings.raw_shape is None else (*self.settings.raw_shape, 3)
        try:
            return decode_image_bytes(data, shape=shape, name="frame")
        except ClipSpotError as err:
            raise StreamError(f"{where}: undecodable {self.settings.kind} frame: {err}") from None


def _open_decoder(settings: StreamSettings) -> StreamDecoder | None:
    if settings.kind in ("mpegts", "fmp4"):
        return StreamDecoder(settings.kind, name=settings.label)  # type: ignore[arg-type]
    return None


class Sampler:
    """Which frames the detector runs on: every k-th frame and/or at most `max_fps` per second.

    The frame index (not arrival order) decides detect-every-k, the rule of
    `VideoRunner.is_keyframe` (`clipspot spot --detect-every K`), so a stream and a file give
    the same results. max_fps then thins the keyframes by their pts.
    """

    def __init__(self, detect_every: int, max_fps: float) -> None:
        self.detect_every = max(1, detect_every)
        self.min_gap = 1.0 / max_fps if max_fps > 0 else 0.0
        self._last_pts: float | None = None

    def wants(self, frame: VideoFrame) -> bool:
        if frame.index % self.detect_every:
            return False
        # A small tolerance: 30 fps pts are not exact multiples of 1/30 s.
        gap = None if frame.pts is None or self._last_pts is None else frame.pts - self._last_pts
        if self.min_gap and gap is not None and gap < self.min_gap - 1e-6:
            return False
        if frame.pts is not None:
            self._last_pts = frame.pts
        return True


class TrackStage:
    """The stream's tracker, through the same VideoRunner `clipspot spot` uses on a file.

    Every frame goes through in order: a spotted frame (instances) updates the tracks (ids,
    voted text, events); a frame that sampling or the drop policy skipped (None) gets the live
    tracks carried to it, with no events.
    """

    def __init__(self, settings: StreamSettings, tracker: TrackerConfig | None = None) -> None:
        config = RunnerConfig(detect_every=settings.detect_every,
                              tracker=tracker or TrackerConfig())
        self.runner = VideoRunner(None, config, source=settings.stream_id)

    def step(
        self, frame: VideoFrame, instances: list[TextInstance] | None, dropped: bool = False
    ) -> tuple[FrameResult, list[TrackEvent]]:
        result = self.runner.track_frame(frame, instances, dropped=dropped)
        return result, self.runner.take_events()

    def close(self) -> list[TrackEvent]:
        """End of stream: pending events, then every live track ends."""
        return self.runner.finish()
