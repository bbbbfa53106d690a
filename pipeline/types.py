"""The typed results that flow from the model to the tracker to the gRPC edge.

One result type end to end: the model emits `TextInstance`s (track_id None), the tracker returns
copies with `track_id` set, and `FrameResult` wraps one frame's instances with its timestamp.
Conversion to JSON Lines (pipeline/jsonl.py) and to protobuf (services/convert.py) happens only at
the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np


@dataclass(frozen=True, eq=False)
class TextInstance:
    """One word found in one image or frame.

    polygon: float32 array (N, 2), N >= 4, clockwise, in the ORIGINAL image's pixel coordinates.
    text: the transcription as read (case kept); "" when only detected.
    score: confidence in [0, 1] (detection score times recognition confidence).
    track_id: the track this word belongs to on video; None on still images.
    """

    polygon: np.ndarray
    text: str
    score: float
    track_id: int | None = None

    def with_track(self, track_id: int) -> TextInstance:
        return replace(self, track_id=track_id)


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """A decoded frame: RGB uint8 (H, W, 3), its display-order index and container pts (s)."""

    index: int
    pts: float | None
    image: np.ndarray


@dataclass(frozen=True, eq=False)
class FrameResult:
    """Everything ClipSpot says about one image or frame (one JSON Lines line)."""

    source: str
    frame: int
    pts: float | None
    instances: tuple[TextInstance, ...] = field(default_factory=tuple)
    dropped: bool = False  # the server skipped spotting this frame (drop policy); tracks carried


TrackEventKind = Literal["started", "updated", "ended"]


@dataclass(frozen=True, eq=False)
class TrackEvent:
    """A track's life-cycle event with its confidence-voted text so far."""

    kind: TrackEventKind
    track_id: int
    text: str
    score: float
    first_pts: float | None
    last_pts: float | None
    polygon: np.ndarray | None = None
