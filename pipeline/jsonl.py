"""JSON Lines: the prediction format `clipspot spot`, `stream` and `eval` all speak.

One line per image or frame:
  {"source": str, "frame": int, "pts": float|null,
   "instances": [{"polygon": [[x, y], ...], "text": str, "score": float, "track_id": int|null}]}
plus `"dropped": true` on frames the server did not spot (drop policy). Track events (`--events`
of `clipspot spot` and `clipspot stream`) are one line each:
  {"event": "started"|"updated"|"ended", "track_id": int, "text": str, "score": float,
   "first_pts": float|null, "last_pts": float|null}
This module is the only place FrameResult/TrackEvent <-> JSON happens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipeline.errors import ClipSpotError
from pipeline.types import FrameResult, TextInstance, TrackEvent


def instance_to_dict(instance: TextInstance) -> dict[str, Any]:
    return {
        "polygon": [[round(float(x), 2), round(float(y), 2)] for x, y in instance.polygon],
        "text": instance.text,
        "score": round(float(instance.score), 4),
        "track_id": instance.track_id,
    }


def frame_result_to_dict(result: FrameResult) -> dict[str, Any]:
    line: dict[str, Any] = {
        "source": result.source,
        "frame": result.frame,
        "pts": None if result.pts is None else round(float(result.pts), 6),
        "instances": [instance_to_dict(i) for i in result.instances],
    }
    if result.dropped:
        line["dropped"] = True
    return line


def frame_result_to_line(result: FrameResult) -> str:
    return json.dumps(frame_result_to_dict(result), ensure_ascii=False)


def write_frame_result(result: FrameResult, out: IO[str]) -> None:
    out.write(frame_result_to_line(result) + "\n")
    out.flush()


def track_event_to_dict(event: TrackEvent) -> dict[str, Any]:
    """The polygon is left out: a track's place is in the frame lines, by its track_id."""
    return {
        "event": event.kind,
        "track_id": event.track_id,
        "text": event.text,
        "score": round(float(event.score), 4),
        "first_pts": event.first_pts,
        "last_pts": event.last_pts,
    }


def write_track_event(event: TrackEvent, out: IO[str]) -> None:
    out.write(json.dumps(track_event_to_dict(event), ensure_ascii=False) + "\n")
    out.flush()


def write_items(
    items: Iterable[FrameResult | TrackEvent], out: IO[str], events_out: IO[str] | None = None
) -> Iterator[FrameResult]:
    """Write frame lines to `out` and track events to `events_out` (if given) as they arrive;
    yield the frames, for callers that also count or render them."""
    for item in items:
        if isinstance(item, TrackEvent):
            if events_out is not None:
                write_track_event(item, events_out)
            continue
        write_frame_result(item, out)
        yield item


def frame_result_from_dict(line: dict[str, Any]) -> FrameResult:
    instances = tuple(
        TextInstance(
            polygon=np.asarray(inst["polygon"], dtype=np.float32).reshape(-1, 2),
            text=str(inst.get("text", "")),
            score=float(inst.get("score", 1.0)),
            track_id=inst.get("track_id"),
        )
        for inst in line.get("instances", [])
    )
    return FrameResult(
        source=str(line["source"]),
        frame=int(line["frame"]),
        pts=None if line.get("pts") is None else float(line["pts"]),
        instances=instances,
        dropped=bool(line.get("dropped", False)),
    )


def read_frame_results(path: str | Path) -> Iterator[FrameResult]:
    """Read a prediction file; a malformed line raises ClipSpotError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise ClipSpotError(f"{path}: prediction file not found")
    with path.open(encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                yield frame_result_from_dict(json.loads(text))
            except (ValueError, KeyError, TypeError) as err:
                raise ClipSpotError(
                    f"{path}:{number}: not a ClipSpot prediction line ({err})"
                ) from None
