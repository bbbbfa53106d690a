"""Ground truth of a synthetic video: every frame's words, as a JSON file beside the MP4.

Format `clipspot-video-gt/1` (documented in docs/synth.md)::

    {"format": "clipspot-video-gt/1", "video": "<mp4 file name beside the json>",
     "width": W, "height": H, "fps": F,
     "frames": [{"frame": 0, "pts": 0.0, "objects": [{"track_id": 1,
                 "polygon": [[x, y], [x, y], [x, y], [x, y]], "text": "HELLO",
                 "dont_care": false}]}, ...],
     "tracks": [{"track_id": 1, "text": "HELLO"}]}

`frame` counts decoded frames from 0 in display order and every frame has an entry; `pts` is the
presentation time in seconds as read back from the written container; polygons are clockwise
quads in pixel coordinates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ClipSpotError

FORMAT = "clipspot-video-gt/1"


@dataclass(frozen=True, eq=False)
class GroundTruthObject:
    """One word in one frame."""

    track_id: int
    polygon: np.ndarray  # (4, 2) float32, clockwise
    text: str
    dont_care: bool


@dataclass(frozen=True)
class FrameGroundTruth:
    frame: int
    pts: float
    objects: tuple[GroundTruthObject, ...]


@dataclass(frozen=True)
class VideoGroundTruth:
    video: str  # the MP4's file name, beside the JSON
    width: int
    height: int
    fps: float
    frames: tuple[FrameGroundTruth, ...]
    tracks: dict[int, str]  # track id -> the word's text


def _to_json(gt: VideoGroundTruth) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "video": gt.video,
        "width": gt.width,
        "height": gt.height,
        "fps": gt.fps,
        "frames": [
            {
                "frame": f.frame,
                "pts": f.pts,
                "objects": [
                    {
                        "track_id": o.track_id,
                        "polygon": [[round(float(x), 2), round(float(y), 2)] for x, y in o.polygon],
                        "text": o.text,
                        "dont_care": o.dont_care,
                    }
                    for o in f.objects
                ],
            }
            for f in gt.frames
        ],
        "tracks": [{"track_id": k, "text": v} for k, v in sorted(gt.tracks.items())],
    }


def write_video_gt(gt: VideoGroundTruth, path: str | Path) -> None:
    """Write `gt` as JSON (one frame a line, so diffs and `grep` stay readable)."""
    data = _to_json(gt)
    frames = data.pop("frames")
    tracks = data.pop("tracks")
    head = json.dumps(data, ensure_ascii=False)[:-1]
    lines = [json.dumps(f, ensure_ascii=False) for f in frames]
    body = ",\n  ".join(lines)
    track_json = json.dumps(tracks, ensure_ascii=False)
    Path(path).write_text(f'{head}, "frames": [\n  {body}\n], "tracks": {track_json}}}\n')


class _Checker:
    """Pulls typed fields out of the parsed JSON, naming the file and field on failure."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, what: str) -> ClipSpotError:
        return ClipSpotError(f"{self.path}: {where}: {what}")

    def get(self, obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
        if not isinstance(obj, dict):
            raise self.fail(where, "expected a JSON object")
        if key not in obj:
            raise self.fail(where, f"missing field {key!r}")
        value = obj[key]
        # bool is an int in Python; a JSON true is never a valid number here.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
            raise self.fail(f"{where}.{key}", f"expected {_names(kind)}, got {value!r:.60}")
        return value

    def polygon(self, value: Any, where: str) -> np.ndarray:
        try:
            polygon = np.array(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise self.fail(where, "expected 4 [x, y] number pairs") from None
        if polygon.shape != (4, 2) or not np.isfinite(polygon).all():
            raise self.fail(where, f"expected 4 [x, y] number pairs, got {value!r:.80}")
        return polygon


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _kinds(kind))


def read_video_gt(path: str | Path) -> VideoGroundTruth:
    """Read and validate a `clipspot-video-gt/1` file; any defect -> ClipSpotError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ClipSpotError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ClipSpotError(f"{path}: not UTF-8 text ({err.reason})") from None
    except json.JSONDecodeError as err:
        raise ClipSpotError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    check = _Checker(path)
    fmt = check.get(data, "format", str, "top level")
    if fmt != FORMAT:
        raise check.fail("format", f"expected {FORMAT!r}, got {fmt!r}")
    frames = []
    for i, item in enumerate(check.get(data, "frames", list, "top level")):
        where = f"frames[{i}]"
        objects = []
        for j, obj in enumerate(check.get(item, "objects", list, where)):
            at = f"{where}.objects[{j}]"
            objects.append(
                GroundTruthObject(
                    track_id=check.get(obj, "track_id", int, at),
                    polygon=check.polygon(check.get(obj, "polygon", list, at), f"{at}.polygon"),
                    text=check.get(obj, "text", str, at),
                    dont_care=check.get(obj, "dont_care", bool, at),
                )
            )
        number = check.get(item, "frame", int, where)
        if number != i:
            raise check.fail(
                f"{where}.frame", f"expected {i} (frames in order from 0), got {number}"
            )
        pts = float(check.get(item, "pts", (int, float), where))
        frames.append(FrameGroundTruth(frame=number, pts=pts, objects=tuple(objects)))
    tracks: dict[int, str] = {}
    for i, item in enumerate(check.get(data, "tracks", list, "top level")):
        tracks[check.get(item, "track_id", int, f"tracks[{i}]")] = check.get(
            item, "text", str, f"tracks[{i}]"
        )
    for frame in frames:
        for j, obj in enumerate(frame.objects):
            if obj.track_id not in tracks:
                raise check.fail(
                    f"frames[{frame.frame}].objects[{j}].track_id",
                    f"track {obj.track_id} is not listed in 'tracks'",
                )
    return VideoGroundTruth(
        video=check.get(data, "video", str, "top level"),
        width=check.get(data, "width", int, "top level"),
        height=check.get(data, "height", int, "top level"),
        fps=float(check.get(data, "fps", (int, float), "top level")),
        frames=tuple(frames),
        tracks=tracks,
    )
