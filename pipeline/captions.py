"""Captions from a video's results: one WebVTT or SRT cue per confirmed text track.

    write_captions(items, "street.vtt", frame_size=(640, 360))   # the format follows the suffix

    captions = TrackCaptions()                 # or fed as the items come, keeping no frames
    for item in items:
        captions.add(item)
    captions.write("street.srt")

`items` are one video's FrameResults and TrackEvents in the order they came: what
`VideoJob.items()` yields, or a gRPC stream (`SpotClient.stream_video`, `ClipSpotClient`).
Only confirmed tracks have events, so only they get cues (a one-keyframe false detection never
shows). A track's cue:

- starts at its first sighting (`first_pts` of its events) and ends one frame after the last
  frame that shows it (its words are followed between keyframes, so that is often later than
  the event's `last_pts`, the last keyframe that saw it);
- carries its final voted text (that of its last event: `ended`, or the last `updated`);
- in WebVTT, sits where the word was (`position:` and `line:` at the polygon's centre, as
  percentages of the frame) when the frame size is known and the word stayed put; a word that
  moved across the frame (a ticker, a pan) keeps the player's default place at the bottom.

Events alone also make cues, ending one frame after each event's `last_pts`. Cue times are the
container's pts, the same clock as the JSON Lines. Tracks without pts (a stream of still
images) or without text (detection-only weights) get no cue.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ClipSpotError
from pipeline.types import FrameResult, TrackEvent

FORMATS = {".vtt": "webvtt", ".srt": "srt"}
DEFAULT_FRAME_S = 1 / 25  # how long the last frame is shown when no frame rate is known
MAX_DRIFT = 0.1  # a word whose centre moved more than this share of the frame is not pinned


@dataclass(frozen=True)
class Cue:
    """One caption: a track's text from `start` to `end` (seconds).

    position: the word's centre (x, y) as percentages of the frame width and height, or None
    to leave the placement to the player.
    """

    track_id: int
    start: float
    end: float
    text: str
    position: tuple[float, float] | None = None


def caption_format(path: str | Path) -> str:
    """"webvtt" or "srt" by the file's suffix; ClipSpotError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ClipSpotError(f"{path}: captions must be a .vtt (WebVTT) or .srt (SubRip) file")
    return FORMATS[suffix]


class TrackCaptions:
    """Turns a video's items into cues as they come; keeps a few numbers per track only.

    frame_size: (width, height) in pixels, to place WebVTT cues; None leaves placement out.
    frame_duration: seconds a frame stays on screen (1 / fps); None: measured from the
        frames' pts, or DEFAULT_FRAME_S when only events were given.
    """

    def __init__(
        self, frame_size: tuple[int, int] | None = None, frame_duration: float | None = None
    ) -> None:
        self.frame_size = frame_size
        self.frame_duration = frame_duration
        self._first: dict[int, TrackEvent] = {}  # track id -> its first event
        self._last: dict[int, TrackEvent] = {}  # ... and its latest
        self._shown_until: dict[int, float] = {}  # track id -> pts of the last frame with it
        self._frames = 0  # frames with pts, and the first and last of those pts
        self._first_pts = self._last_pts = 0.0

    def add(self, item: FrameResult | TrackEvent) -> None:
        if isinstance(item, TrackEvent):
            self._first.setdefault(item.track_id, item)
            self._last[item.track_id] = item
            return
        if item.pts is None:
            return
        if not self._frames:
            self._first_pts = item.pts
        self._frames += 1
        self._last_pts = item.pts
        for instance in item.instances:
            if instance.track_id is not None:
                self._shown_until[instance.track_id] = item.pts

    def cues(self) -> list[Cue]:
        """One cue per track with pts and text, by start time (then track id)."""
        hold = self._frame_duration()
        cues = []
        for track_id, final in self._last.items():
            first = self._first[track_id]
            text = _one_line(final.text)
            if first.first_pts is None or final.last_pts is None or not text:
                continue
            last = max(final.last_pts, self._shown_until.get(track_id, final.last_pts))
            place = _position(first, final, self.frame_size)
            cues.append(Cue(track_id, first.first_pts, last + hold, text, place))
        return sorted(cues, key=lambda c: (c.start, c.track_id))

    def _frame_duration(self) -> float:
        if self.frame_duration is not None:
            return max(self.frame_duration, 0.0)
        if self._frames >= 2:
            return (self._last_pts - self._first_pts) / (self._frames - 1)
        return DEFAULT_FRAME_S

    def write(self, path: str | Path) -> int:
        """Write the cues so far: WebVTT for `.vtt`, SubRip for `.srt`; returns their count."""
        kind = caption_format(path)
        cues = self.cues()
        text = to_webvtt(cues) if kind == "webvtt" else to_srt(cues)
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as err:
            raise ClipSpotError(f"{path}: cannot write captions ({err.strerror})") from None
        return len(cues)


def write_captions(
    items: Iterable[FrameResult | TrackEvent],
    path: str | Path,
    frame_size: tuple[int, int] | None = None,
    frame_duration: float | None = None,
) -> int:
    """Write a video's results as captions, one cue per track: WebVTT (`.vtt`) or SRT (`.srt`).

    Args:
        items: the video's FrameResults and TrackEvents in the order they came (TrackEvents
            alone will do; the frames make each cue end exactly when its word leaves).
        path: the file to write; its suffix picks the format.
        frame_size: (width, height) of the video, to place WebVTT cues on their words.
        frame_duration: 1 / fps; default: measured from the frames' pts.

    Returns:
        The number of cues written.
    """
    captions = TrackCaptions(frame_size, frame_duration)
    for item in items:
        captions.add(item)
    return captions.write(path)


def _one_line(text: str) -> str:
    """A cue's text on one line: a blank line or "-->" would end the cue early."""
    return " ".join(text.replace("-->", "->").split())


def _position(
    first: TrackEvent, final: TrackEvent, frame_size: tuple[int, int] | None
) -> tuple[float, float] | None:
    """The word's centre in percent of the frame; None when unknown or it moved too far."""
    if frame_size is None or first.polygon is None or final.polygon is None:
        return None
    size = np.asarray(frame_size, dtype=np.float64)
    start = np.asarray(first.polygon, dtype=np.float64).reshape(-1, 2).mean(axis=0) / size
    end = np.asarray(final.polygon, dtype=np.float64).reshape(-1, 2).mean(axis=0) / size
    if np.abs(end - start).max() > MAX_DRIFT:
        return None
    x, y = np.clip((start + end) / 2 * 100, 0.0, 100.0)
    return float(x), float(y)


def to_webvtt(cues: Iterable[Cue]) -> str:
    """A WebVTT file: a `track-N` identifier per cue (N the track id), text escaped."""
    blocks = ["WEBVTT"]
    for cue in cues:
        start, end = _milliseconds(cue)
        timing = f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}"
        if cue.position is not None:
            x, y = cue.position
            timing += f" position:{x:.1f}% line:{y:.1f}%"
        blocks.append(f"track-{cue.track_id}\n{timing}\n{_escape(cue.text)}")
    return "\n\n".join(blocks) + "\n"


def to_srt(cues: Iterable[Cue]) -> str:
    """A SubRip file: cues numbered from 1, plain text (SRT has no placement)."""
    blocks = []
    for number, cue in enumerate(cues, start=1):
        start, end = _milliseconds(cue)
        timing = f"{_timestamp(start, ',')} --> {_timestamp(end, ',')}"
        blocks.append(f"{number}\n{timing}\n{cue.text}")
    return "".join(block + "\n\n" for block in blocks)


def _milliseconds(cue: Cue) -> tuple[int, int]:
    """Start and end in whole milliseconds, never negative, the end after the start."""
    start = max(0, round(cue.start * 1000))
    return start, max(start + 1, round(cue.end * 1000))


def _timestamp(ms: int, separator: str) -> str:
    """HH:MM:SS.mmm (WebVTT) or HH:MM:SS,mmm (SRT)."""
    seconds, ms = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{ms:03d}"


_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _escape(text: str) -> str:
    """WebVTT cue text is markup: `&`, `<` and `>` must be character references."""
    return text.translate(_ESCAPES)
