"""Push decoding of streamable video (MPEG-TS, fragmented MP4) as its bytes arrive, and the
client-side remux that produces such bytes from a file without re-encoding.

    decoder = StreamDecoder("mpegts", name="cam-1")
    for chunk in remux_to_mpegts("clip.mp4"):      # or bytes from the network
        for frame in decoder.feed(chunk):           # VideoFrames decodable so far
            ...
    tail = decoder.close()                          # frames the decoder still held

libavformat only pulls (it calls `read()`), while the service is pushed chunks, so the demuxer
runs in a thread reading a blocking file-like object. `feed()` hands the chunk over and waits
until the demuxer is starved again (blocked in `read()` with nothing left): at that point every
frame the bytes so far allow has been decoded, so results are deterministic whatever the
chunking. MPEG-TS packets are checked for their sync byte as they arrive, so a corrupt chunk
fails at once with its byte offset instead of being skipped silently by the demuxer's resync.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import av
import numpy as np

from pipeline.errors import ClipSpotError
from pipeline.types import VideoFrame

StreamKind = Literal["mpegts", "fmp4"]
_FORMATS: dict[str, str] = {"mpegts": "mpegts", "fmp4": "mp4"}
_TS_PACKET = 188
_TS_SYNC = 0x47
# Small probe budget: the stream parameters are known after the first keyframe, and a large
# probe would hold the first results back until seconds of video had arrived.
_DEMUX_OPTIONS = {"probesize": "65536", "analyzeduration": "0"}
# Real streams start decoding at their first keyframe; this many bytes without one means the
# payload is not video we can decode (keeps a garbage stream from being buffered forever).
_MAX_BYTES_WITHOUT_FRAME = 16 * 1024 * 1024
_MP4_FIRST_BOXES = {b"ftyp", b"styp", b"moov", b"moof", b"sidx", b"free"}


class _ChunkPipe:
    """A blocking, non-seekable file-like object that libavformat reads and `feed` fills."""

    def __init__(self) -> None:
        self._chunks: deque[memoryview] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.starved = False  # the reader is blocked waiting for bytes that have not come

    def push(self, data: bytes) -> None:
        with self._cond:
            if data:
                self._chunks.append(memoryview(data))
                self.starved = False
            self._cond.notify_all()

    def close_input(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while not self._chunks and not self._closed:
                self.starved = True
                self._cond.notify_all()
                self._cond.wait()
            if not self._chunks:
                return b""  # end of stream
            head = self._chunks.popleft()
            if 0 <= size < len(head):
                self._chunks.appendleft(head[size:])
                head = head[:size]
            return bytes(head)

    def wait_starved_or(self, done: threading.Event) -> None:
        with self._cond:
            while not (self.starved and not self._chunks) and not done.is_set():
                self._cond.wait(timeout=0.05)


class StreamDecoder:
    """Incremental decoder for one stream's MPEG-TS or fragmented-MP4 bytes.

    kind: "mpegts" (188-byte packets, what `remux_to_mpegts` produces) or "fmp4".
    name: how error messages name the stream (e.g. the stream id).
    Frames come out in display order with `index` counting from 0 and `pts` in seconds as the
    container says (not rebased to 0).
    """

    def __init__(self, kind: StreamKind, name: str = "stream", threads: int = 1) -> None:
        if kind not in _FORMATS:
            raise ClipSpotError(f"{name}: unknown stream kind {kind!r} (expected mpegts or fmp4)")
        self.kind = kind
        self.name = name
        self._threads = threads
        self._pipe = _ChunkPipe()
        self._frames: deque[VideoFrame] = deque()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._received = 0
        self._count = 0
        self._thread = threading.Thread(target=self._demux, name=f"decode-{name}", daemon=True)
        self._thread.start()

    @property
    def bytes_received(self) -> int:
        return self._received

    def feed(self, data: bytes) -> list[VideoFrame]:
        """Add encoded bytes; return the frames that became decodable (possibly none)."""
        self._check_bytes(data)
        self._pipe.push(bytes(data))
        self._received += len(data)
        self._pipe.wait_starved_or(self._done)
        frames = self._take()
        if self._count == 0 and self._received > _MAX_BYTES_WITHOUT_FRAME:
            raise ClipSpotError(
                f"{self.name}: no decodable video in the first {self._received} bytes of "
                f"{self.kind} (not H.264/HEVC video, or no keyframe)"
            )
        return frames

    def close(self) -> list[VideoFrame]:
        """Signal end of stream; return the frames the decoder still held back (reordering)."""
        self._pipe.close_input()
        self._thread.join()
        if self._received == 0:
            return []  # nothing was sent: an empty stream, not a corrupt one
        frames = self._take()
        if self._count == 0:  # bytes came, yet not one frame: not video we can decode
            raise ClipSpotError(
                f"{self.name}: no decodable video in {self._received} bytes of {self.kind} "
                "(truncated before the first keyframe, or not H.264/HEVC video)"
            )
        return frames

    def _take(self) -> list[VideoFrame]:
        with self._lock:
            frames = list(self._frames)
            self._frames.clear()
        if self._error is not None:
            raise ClipSpotError(self._describe(self._error)) from None
        return frames

    def _describe(self, err: BaseException) -> str:
        if isinstance(err, ClipSpotError):
            return str(err)
        if isinstance(err, EOFError) and self._count == 0:
            return f"{self.name}: no decodable video in {self._received} bytes of {self.kind}"
        return (
            f"{self.name}: cannot decode the {self.kind} stream after {self._received} bytes "
            f"({type(err).__name__}: {err})"
        )

    def _check_bytes(self, data: bytes) -> None:
        """Reject bytes that cannot be this container, naming the offending byte offset."""
        if self.kind == "mpegts":
            buf = np.frombuffer(data, dtype=np.uint8)
            first = (-self._received) % _TS_PACKET  # first packet start inside this chunk
            syncs = buf[first::_TS_PACKET]
            bad = np.flatnonzero(syncs != _TS_SYNC)
            if bad.size:
                offset = self._received + first + int(bad[0]) * _TS_PACKET
                raise ClipSpotError(
                    f"{self.name}: corrupt MPEG-TS at byte {offset}: expected sync byte 0x47, "
                    f"got 0x{int(syncs[bad[0]]):02x}"
                )
        elif self._received == 0 and len(data) >= 8 and bytes(data[4:8]) not in _MP4_FIRST_BOXES:
            raise ClipSpotError(
                f"{self.name}: not a fragmented MP4: first box type is {bytes(data[4:8])!r}"
            )

    def _demux(self) -> None:
        try:
            options = dict(_DEMUX_OPTIONS)
            with av.open(self._pipe, format=_FORMATS[self.kind], options=options) as container:
                if not container.streams.video:
                    raise ClipSpotError(f"{self.name}: the {self.kind} stream has no video track")
                stream = container.streams.video[0]
                if stream.codec_context is None:  # e.g. AVS2: demuxed, but no decoder here
                    raise ClipSpotError(
                        f"{self.name}: the {self.kind} stream's video codec cannot be decoded "
                        "here (no decoder for it; send H.264 or HEVC)"
                    )
                stream.codec_context.thread_count = self._threads
                for frame in container.decode(stream):
                    rgb = frame.to_ndarray(format="rgb24")
                    with self._lock:
                        self._frames.append(VideoFrame(self._count, frame.time, rgb))
                    self._count += 1
        except BaseException as err:  # handed to the caller's thread by _take()
            self._error = err
        finally:
            self._done.set()
            self._pipe.close_input()


class _ByteSink:
    """Write-only, non-seekable target for the muxer; `take()` empties what it wrote."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.size = 0
        return data


def remux_streamable(
    path: str | Path, kind: StreamKind = "mpegts", chunk_size: int = 64 * 1024
) -> Iterator[bytes]:
    """Remux a video file's first video track into MPEG-TS or fragmented MP4, without
    re-encoding, as chunks of about `chunk_size` bytes (what `clipspot stream` sends)."""
    path = Path(path)
    if not path.is_file():
        raise ClipSpotError(f"{path}: no such video file")
    sink = _ByteSink()
    # avoid_negative_ts=disabled keeps the source's pts: with B-frames the first dts is
    # negative and the default would shift every timestamp (by 0.08 s on a 25 fps clip).
    options = {"avoid_negative_ts": "disabled"}
    if kind == "fmp4":
        options["movflags"] = "frag_keyframe+empty_moov+default_base_moof"
    try:
        source = av.open(str(path))
    except av.FFmpegError as err:
        raise ClipSpotError(f"{path}: cannot open video ({err})") from None
    with source:
        if not source.streams.video:
            raise ClipSpotError(f"{path}: no video track")
        in_stream = source.streams.video[0]
        out = av.open(sink, "w", format=_FORMATS[kind], container_options=options)
        out_stream = out.add_stream_from_template(in_stream)
        try:
            for packet in source.demux(in_stream):
                if packet.dts is None:  # the demuxer's end-of-stream flush packet
                    continue
                packet.stream = out_stream
                out.mux(packet)
                if sink.size >= chunk_size:
                    yield sink.take()
        except av.FFmpegError as err:
            raise ClipSpotError(f"{path}: cannot remux video ({err})") from None
        finally:
            out.close()
    if sink.size:
        yield sink.take()


def remux_to_mpegts(path: str | Path, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """Remux a file's H.264 (or any codec MPEG-TS carries) to MPEG-TS chunks, no re-encoding."""
    return remux_streamable(path, "mpegts", chunk_size)
