"""The gRPC edge: protobuf in, plain Python out, and back. Nothing else touches protobuf.

Requests: `settings_from_proto` validates a StreamConfig into `StreamSettings` (StreamError
naming the stream and the field when it is unusable); `payload_from_proto` turns each later
message into a `Payload`. Responses: `output_to_proto` turns the stream core's outputs
(`Credits`, `AnsweredFrame`, `TrackEvent`) into StreamResponses. The client converts the
other way with the `*_from_proto` functions. Polygons travel as float32 points, scores and
timestamps as doubles, so a result that goes through protobuf and back prints the same JSON
Lines as one that never left the process.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import numpy as np
from google.protobuf.message import DecodeError

from pipeline.types import FrameResult, TextInstance, TrackEvent, TrackEventKind
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.stream_types import (
    AnsweredFrame,
    Credits,
    DropPolicy,
    InputKind,
    Payload,
    SessionLimits,
    StreamError,
    StreamOutput,
    StreamSettings,
)

INPUT_KIND_FROM_PROTO: dict[int, InputKind] = {
    pb.INPUT_KIND_MPEGTS: "mpegts",
    pb.INPUT_KIND_FMP4: "fmp4",
    pb.INPUT_KIND_IMAGES: "images",
    pb.INPUT_KIND_RAW_RGB: "raw",
}
DROP_POLICY_FROM_PROTO: dict[int, DropPolicy] = {
    pb.DROP_POLICY_UNSPECIFIED: "none",
    pb.DROP_POLICY_NONE: "none",
    pb.DROP_POLICY_DROP_OLDEST: "drop_oldest",
    pb.DROP_POLICY_KEEP_LATEST: "keep_latest",
}
DROP_POLICY_TO_PROTO: dict[DropPolicy, int] = {
    "none": pb.DROP_POLICY_NONE,
    "drop_oldest": pb.DROP_POLICY_DROP_OLDEST,
    "keep_latest": pb.DROP_POLICY_KEEP_LATEST,
}


def settings_from_proto(
    request: pb.StreamRequest | None, limits: SessionLimits
) -> StreamSettings:
    """The first request of a stream -> settings; StreamError when it is not a usable config."""
    which = None if request is None else request.WhichOneof("message")
    if which != "config":
        raise StreamError(
            f"stream: config missing: the first message must be a StreamConfig, got {_name(which)}"
        )
    config = request.config  # type: ignore[union-attr]
    label = f"stream {config.stream_id!r}"
    if config.input_kind not in INPUT_KIND_FROM_PROTO:
        raise StreamError(f"{label}: config: input_kind is unspecified or unknown "
                          f"({config.input_kind}); use MPEGTS, FMP4, IMAGES or RAW_RGB")
    kind = INPUT_KIND_FROM_PROTO[config.input_kind]
    if config.drop_policy not in DROP_POLICY_FROM_PROTO:
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
        detect_every=sampling.detect_every,
        fixed_keyframes=sampling.fixed_keyframes,
        max_fps=sampling.max_fps,
        drop_policy=DROP_POLICY_FROM_PROTO[config.drop_policy],
        max_queue=config.max_queue or limits.default_queue,
        resume_from=config.resume_from,
        first_frame=config.first_frame,
        skip_frames=config.skip_frames,
        first_track_id=config.first_track_id or 1,
    )


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


async def parsed_requests(
    requests: AsyncIterator[pb.StreamRequest],
) -> AsyncIterator[pb.StreamRequest]:
    """The requests of a stream; one protobuf cannot parse (gRPC parses each as it is read,
    e.g. a string field that is not UTF-8) ends the stream with a StreamError naming it."""
    label, count = "stream", 0
    iterator = aiter(requests)
    while True:
        count += 1
        try:
            request = await anext(iterator)
        except StopAsyncIteration:
            return
        except DecodeError as err:
            raise StreamError(f"{label}: message {count} cannot be parsed: {err}") from None
        if count == 1 and request.WhichOneof("message") == "config":
            label = f"stream {request.config.stream_id!r}"
        yield request


def payload_from_proto(request: pb.StreamRequest) -> Payload:
    which = request.WhichOneof("message")
    if which == "chunk":
        return Payload("chunk", request.chunk.seq, request.chunk.data)
    if which == "frame":
        frame = request.frame
        pts = frame.pts if frame.HasField("pts") else None
        return Payload("frame", frame.seq, frame.data, pts)
    return Payload(None, -1, what=_name(which))


def _name(which: str | None) -> str:
    return "an empty message" if which is None else f"a {which} message"


def output_to_proto(output: StreamOutput) -> pb.StreamResponse:
    if isinstance(output, AnsweredFrame):
        return pb.StreamResponse(result=frame_result_to_proto(output.result, output.seq))
    if isinstance(output, Credits):
        credits = pb.Credits(grant=output.grant)
        if output.consumed_seq is not None:
            credits.consumed_seq = output.consumed_seq
        return pb.StreamResponse(credits=credits)
    return pb.StreamResponse(track=track_event_to_proto(output))


_KIND_TO_PROTO: dict[str, int] = {
    "started": pb.TRACK_EVENT_KIND_STARTED,
    "updated": pb.TRACK_EVENT_KIND_UPDATED,
    "ended": pb.TRACK_EVENT_KIND_ENDED,
}
_KIND_FROM_PROTO: dict[int, TrackEventKind] = {v: k for k, v in _KIND_TO_PROTO.items()}  # type: ignore[misc]


def _fill_polygon(points: object, polygon: np.ndarray) -> None:
    for x, y in np.asarray(polygon, dtype=np.float32).reshape(-1, 2).tolist():
        points.add(x=x, y=y)  # type: ignore[attr-defined]


def _polygon(points: object) -> np.ndarray:
    flat = [(p.x, p.y) for p in points]  # type: ignore[attr-defined]
    return np.asarray(flat, dtype=np.float32).reshape(-1, 2)


def instance_to_proto(instance: TextInstance) -> pb.TextInstance:
    msg = pb.TextInstance(text=instance.text, score=float(instance.score))
    _fill_polygon(msg.polygon, instance.polygon)
    if instance.track_id is not None:
        msg.track_id = int(instance.track_id)
    return msg


def instance_from_proto(msg: pb.TextInstance) -> TextInstance:
    return TextInstance(
        polygon=_polygon(msg.polygon),
        text=msg.text,
        score=msg.score,
        track_id=msg.track_id if msg.HasField("track_id") else None,
    )


def frame_result_to_proto(result: FrameResult, seq: int) -> pb.FrameResult:
    """`seq` is the request message that completed the frame (the client's resume point)."""
    msg = pb.FrameResult(seq=seq, frame=result.frame, dropped=result.dropped)
    if result.pts is not None:
        msg.pts = float(result.pts)
    msg.instances.extend(instance_to_proto(i) for i in result.instances)
    return msg


def frame_result_from_proto(msg: pb.FrameResult, source: str) -> FrameResult:
    """The server does not echo the source; the client names it (the path or URL it sent)."""
    return FrameResult(
        source=source,
        frame=msg.frame,
        pts=msg.pts if msg.HasField("pts") else None,
        instances=tuple(instance_from_proto(i) for i in msg.instances),
        dropped=msg.dropped,
    )


def track_event_to_proto(event: TrackEvent) -> pb.TrackEvent:
    msg = pb.TrackEvent(
        kind=_KIND_TO_PROTO[event.kind],
        track_id=event.track_id,
        text=event.text,
        score=float(event.score),
    )
    if event.first_pts is not None:
        msg.first_pts = float(event.first_pts)
    if event.last_pts is not None:
        msg.last_pts = float(event.last_pts)
    if event.polygon is not None:
        _fill_polygon(msg.polygon, event.polygon)
    return msg


def track_event_from_proto(msg: pb.TrackEvent) -> TrackEvent:
    return TrackEvent(
        kind=_KIND_FROM_PROTO[msg.kind],
        track_id=msg.track_id,
        text=msg.text,
        score=msg.score,
        first_pts=msg.first_pts if msg.HasField("first_pts") else None,
        last_pts=msg.last_pts if msg.HasField("last_pts") else None,
        polygon=_polygon(msg.polygon) if len(msg.polygon) else None,
    )
