"""The one bridge between pipeline result types and their protobuf messages.

Everything that crosses the gRPC edge (embedded server, Ray Serve front, client) converts here,
so a field added to `pipeline/types.py` has exactly one place to be wired. Polygons travel as
float32 points, scores and timestamps as doubles, so a result that goes through protobuf and back
prints the same JSON Lines as one that never left the process.
"""

from __future__ import annotations

import numpy as np

from pipeline.types import FrameResult, TextInstance, TrackEvent, TrackEventKind
from services.rpc.clipspot.v1 import spotting_pb2 as pb

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


def result_response(result: FrameResult, seq: int) -> pb.StreamResponse:
    return pb.StreamResponse(result=frame_result_to_proto(result, seq))


def track_response(event: TrackEvent) -> pb.StreamResponse:
    return pb.StreamResponse(track=track_event_to_proto(event))


def credits_response(grant: int, consumed_seq: int | None) -> pb.StreamResponse:
    credits = pb.Credits(grant=grant)
    if consumed_seq is not None:
        credits.consumed_seq = consumed_seq
    return pb.StreamResponse(credits=credits)
