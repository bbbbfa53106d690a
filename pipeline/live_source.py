"""A camera URL that survives drops: reconnect with backoff, frame numbers and pts kept rising.

    source = open_video("rtsp://camera.local/stream", reconnect_for_s=60)
    for frame in source:        # VideoFrame(index, pts, rgb): index +1 per frame, pts rising
        ...

`open_video` gives a plain VideoReader for files (a file ending is the end) and a LiveSource for
stream URLs (rtsp://, http(s)://, ...; not file:). When a live URL ends or fails part-way (the
camera rebooted, the network dropped, nothing arrived for `read_timeout_s`), LiveSource logs
one WARNING line on the "clipspot.live" logger, reopens the URL with exponential backoff (0.5 s
doubling to 8 s) and goes on:

- frame numbers continue from the last one (never restart at 0);
- pts stay rising on one clock: the first connection keeps the camera's pts; after a reconnect
  the new connection's pts are shifted so that its first frame comes `max(one frame, the
  wall-clock time from the drop to that frame)` after the last frame before the drop. A
  camera's own clock cannot be trusted across connections (a restarted camera or server
  starts its clock again), and the wall-clock gap keeps captions and track times honest
  about how long the camera was away.

If the camera is not back within `reconnect_for_s` of the drop (plus at most one open timeout),
iteration ends with a one-line ClipSpotError naming the URL, the last frame and the reason: an
unattended caller learns the camera is gone rather than seeing a normal end. A URL that
declares a duration (a file served over HTTP) and reaches its end cleanly simply ends. The first
open is not retried: a wrong URL fails at once.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from collections.abc import Generator, Iterator

from pipeline.decode import READ_TIMEOUT_S, VideoInfo, VideoReader, VideoReadError, is_url
from pipeline.errors import ClipSpotError
from pipeline.types import VideoFrame

__all__ = ["DEFAULT_RECONNECT_S", "LiveSource", "is_live_url", "open_video", "show_live_log"]

log = logging.getLogger("clipspot.live")
_cli_handler = logging.StreamHandler()

DEFAULT_RECONNECT_S = 60.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0
_END_OF_FILE = "End of file"


def show_live_log(prefix: str) -> None:
    """Print the drop and reconnect lines on stderr as `PREFIX: message` (the CLI's view; a
    library caller configures logging itself). Idempotent; stderr is looked up each call."""
    _cli_handler.stream = sys.stderr  # not setStream: it flushes the old one, maybe closed
    _cli_handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    if _cli_handler not in log.handlers:
        log.addHandler(_cli_handler)
    log.setLevel(logging.INFO)


def is_live_url(source: str) -> bool:
    """A stream URL that may drop and come back (any URL but file:)."""
    return is_url(source) and not source.lower().startswith("file:")


def open_video(
    source: str,
    threads: int = 0,
    reconnect_for_s: float = DEFAULT_RECONNECT_S,
    read_timeout_s: float = READ_TIMEOUT_S,
) -> VideoReader | LiveSource:
    """A reader for a video file or stream URL; live URLs reconnect unless reconnect_for_s <= 0."""
    if is_live_url(source) and reconnect_for_s > 0:
        return LiveSource(source, reconnect_for_s, threads=threads, read_timeout_s=read_timeout_s)
    return VideoReader(source, threads=threads, read_timeout_s=read_timeout_s)


class _PtsClock:
    """Joins the pts of consecutive connections into one rising clock (see the module doc)."""

    def __init__(self, frame_s: float) -> None:
        self.frame_s = frame_s
        self.offset = 0.0
        self.last: float | None = None
        self.dropped_at: float | None = None  # time.monotonic() of the drop, until a new frame

    def stamp(self, pts: float | None) -> float | None:
        if pts is None:  # a source without timestamps stays without
            return None
        if self.dropped_at is not None and self.last is not None:
            gap = max(self.frame_s, time.monotonic() - self.dropped_at)
            self.offset = self.last + gap - pts
        self.dropped_at = None
        out = pts + self.offset
        if self.last is not None and out <= self.last:  # the camera's clock stepped back
            self.offset += self.last + self.frame_s - out
            out = self.last + self.frame_s
        self.last = out
        return out


class LiveSource:
    """A stream URL read across drops; iterate it like a VideoReader (see the module doc).

    Args:
        url: the camera's URL (opened at once: a bad URL raises ClipSpotError here).
        reconnect_for_s: keep trying to reconnect this long after a drop.
        threads: decoder threads (0: FFmpeg's choice).
        read_timeout_s: a connection that sends nothing this long counts as dropped.
    """

    def __init__(
        self,
        url: str,
        reconnect_for_s: float = DEFAULT_RECONNECT_S,
        *,
        threads: int = 0,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.source = url
        self.reconnect_for_s = reconnect_for_s
        self._threads, self._read_timeout_s = threads, read_timeout_s
        self._reader: VideoReader | None = self._open()
        self.info: VideoInfo = self._reader.info
        self.reconnects = 0  # successful reconnections so far
        self._next_index = 0
        self._down_since: float | None = None  # when frames stopped; None while they flow
        self._clock = _PtsClock(1.0 / self.info.fps if self.info.fps else 0.04)

    def _open(self) -> VideoReader:
        return VideoReader(self.source, threads=self._threads, read_timeout_s=self._read_timeout_s)

    def __iter__(self) -> Iterator[VideoFrame]:
        reader = self._reader
        while reader is not None:
            reason = yield from self._frames(reader)
            if reason == _END_OF_FILE and reader.info.duration_s is not None:
                return  # a file behind a URL: its end is the end
            self._reader = reader = self._reconnect(reason)

    def _frames(self, reader: VideoReader) -> Generator[VideoFrame, None, str]:
        """One connection's frames, renumbered and re-timed; returns why it stopped."""
        try:
            for frame in reader:
                pts = self._clock.stamp(frame.pts)
                self._down_since = None
                yield VideoFrame(self._next_index, pts, frame.image)
                self._next_index += 1
        except VideoReadError as err:
            return err.reason
        except ClipSpotError as err:  # "no decodable video frames": a broken connection too
            return str(err).removeprefix(f"{self.source}: ")
        return _END_OF_FILE

    def _reconnect(self, reason: str) -> VideoReader:
        """Reopen the URL with backoff until it works or the budget since the drop is spent."""
        # The budget runs from the last frame's drop: a URL that opens and closes again at
        # once (no frames) does not restart it.
        dropped_at = self._down_since = self._down_since or time.monotonic()
        self._clock.dropped_at = self._clock.dropped_at or dropped_at
        deadline = dropped_at + self.reconnect_for_s
        where = (f"after frame {self._next_index - 1}" if self._next_index
                 else "before its first frame")
        failure = reason
        for attempt in itertools.count(1):  # ends by returning a reader or raising
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (attempt - 1))
            delay = min(delay, deadline - time.monotonic())
            if delay < 0:
                raise ClipSpotError(
                    f"{self.source}: camera dropped {where} ({reason}) and did not come back "
                    f"within {self.reconnect_for_s:g} s ({attempt - 1} attempts; last: {failure})"
                )
            if attempt == 1:
                log.warning("camera %s: dropped %s (%s); reconnecting in %.1f s (attempt 1)",
                            self.source, where, reason, delay)
            else:
                log.warning("camera %s: reconnect attempt %d failed (%s); retrying in %.1f s",
                            self.source, attempt - 1, failure, delay)
            time.sleep(delay)
            try:
                reader = self._open()
            except ClipSpotError as err:
                failure = str(err).removeprefix(f"{self.source}: ")
                continue
            self.reconnects += 1
            log.info("camera %s: reconnected after %.1f s (attempt %d); frames go on from %d",
                     self.source, time.monotonic() - dropped_at, attempt, self._next_index)
            return reader
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
