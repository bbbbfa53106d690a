"""Turn what a user points ClipSpot at into RGB frames.

    kind = input_kind("street.mp4")             # "image" | "directory" | "video"
    for source, frame in iter_input("street.mp4"):
        ...                                       # frame: VideoFrame(index, pts, rgb uint8)

Inputs: an image file, a directory of images (natural order: img_2 before img_10), a video file,
or a stream URL PyAV can open (rtsp://, http(s)://, udp://, file:). Video frames come in display
order with `pts` in seconds exactly as the container says (it may not start at 0); images have
`frame` 0 and `pts` None. Push decoding for the service (bytes arriving over gRPC) lives in
`pipeline.stream_decode` and is re-exported here.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np
from PIL import Image

from pipeline.errors import ClipSpotError
from pipeline.stream_decode import StreamDecoder, remux_streamable, remux_to_mpegts
from pipeline.types import VideoFrame

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
    "READ_TIMEOUT_S",
    "StreamDecoder",
    "VideoReadError",
    "VideoReader",
    "decode_image_bytes",
    "input_kind",
    "is_url",
    "iter_input",
    "list_images",
    "read_image",
    "remux_streamable",
    "remux_to_mpegts",
]

InputKind = Literal["image", "directory", "video"]
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_URL = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt|file):", re.IGNORECASE)
# 8192x8192: the largest raw frame a stream may declare (SessionLimits.max_raw_side); 201 MB
# once decoded to RGB.
MAX_IMAGE_PIXELS = 8192 * 8192
_OPEN_TIMEOUT_S = 10.0  # a dead camera URL fails in seconds instead of hanging the CLI
# A stream that stops sending without closing fails after this long instead of hanging.
READ_TIMEOUT_S = 10.0


def is_url(source: str) -> bool:
    return bool(_URL.match(source))


def input_kind(source: str) -> InputKind:
    """Classify an input; a local path that does not exist is a ClipSpotError."""
    if is_url(source):
        return "video"
    path = Path(source)
    if path.is_dir():
        return "directory"
    if not path.exists():
        raise ClipSpotError(f"{source}: no such file or directory")
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_images(directory: str | Path) -> list[Path]:
    """The image files directly inside `directory`, in natural order."""
    directory = Path(directory)
    files = [p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ClipSpotError(f"{directory}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return sorted(files, key=_natural_key)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3)."""
    path = Path(path)
    if not path.is_file():
        raise ClipSpotError(f"{path}: no such image file")
    return decode_image_bytes(path.read_bytes(), name=str(path))


def decode_image_bytes(
    data: bytes,
    shape: tuple[int, ...] | None = None,
    name: str = "image",
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Decode one frame sent as bytes: JPEG/PNG/... when `shape` is None, else raw RGB uint8 of
    `shape` (H, W, 3) (or (H, W) grey, expanded to RGB).

    An encoded image's size is read from its header first: one declaring more than
    `max_pixels` is refused before anything is decoded (a 400 KB PNG can declare 20000x20000,
    2.4 GB once decoded to RGB), and so is data whose header no reader recognises.
    """
    if shape is not None:
        return _raw_frame(data, tuple(int(s) for s in shape), name)
    unreadable = f"{name}: not a readable image ({len(data)} bytes; corrupt or unsupported)"
    size = _declared_size(data)
    if size is None:
        raise ClipSpotError(unreadable)
    width, height = size
    if width * height > max_pixels:
        raise ClipSpotError(
            f"{name}: image declares {width}x{height} pixels, above the limit of "
            f"{max_pixels} pixels; refused without decoding"
        )
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise ClipSpotError(unreadable)
    return np.ascontiguousarray(image[:, :, ::-1])


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an encoded image's header, without decoding; None: unrecognised."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    try:  # BMP, WebP, TIFF, ...: Pillow reads the header only (decoding is lazy)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Image.DecompressionBombError:
        return 1 << 31, 1  # Pillow's own bomb limit (about 179 M pixels) is past ours
    except (OSError, ValueError, SyntaxError, struct.error, EOFError):
        return None


_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                       0xCF})


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG marker segments to the frame header (SOFn: precision, height, width)."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # no length field
            at += 2
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if marker in _JPEG_SOF:
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        at += 2 + length
    return None


def _raw_frame(data: bytes, shape: tuple[int, ...], name: str) -> np.ndarray:
    valid = len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)
    if not valid or min(shape) <= 0:
        raise ClipSpotError(f"{name}: raw frame shape {shape} is not (H, W, 3) or (H, W)")
    expected = int(np.prod(shape))
    if len(data) != expected:
        raise ClipSpotError(
            f"{name}: raw frame of shape {shape} needs {expected} bytes, got {len(data)}"
        )
    frame = np.frombuffer(data, dtype=np.uint8).reshape(shape)
    return np.repeat(frame[:, :, None], 3, axis=2) if frame.ndim == 2 else frame.copy()


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float | None  # the container's average rate; None for streams that do not say
    frame_count: int | None  # None when unknown (live streams, some containers)
    duration_s: float | None = None  # None for live streams (an MPEG-TS, RTSP or HLS feed)


class VideoReadError(ClipSpotError):
    """Decoding stopped part-way: `frames` frames were read, `reason` is FFmpeg's."""

    def __init__(self, message: str, frames: int, reason: str) -> None:
        super().__init__(message)
        self.frames = frames
        self.reason = reason


class VideoReader:
    """A video file or stream URL decoded frame by frame in display order.

    Opens on construction (so a bad path fails before any work) and closes when iteration ends.
    threads: decoder threads (0 = FFmpeg's choice); frame threading adds no reordering here
    because frames are read to the end. read_timeout_s: a URL that sends nothing for this long
    raises VideoReadError (tests/test_live_source.py checks it on a silent HTTP source).
    """

    def __init__(
        self, source: str, threads: int = 0, read_timeout_s: float = READ_TIMEOUT_S
    ) -> None:
        self.source = source
        options = _url_options(source, read_timeout_s)
        # av.open's read timeout (an interrupt callback) backs up the protocol's own one, which
        # fires first and says why ("Connection timed out" rather than "Immediate exit ...").
        backstop = read_timeout_s + 1.0 if options else read_timeout_s
        try:
            self._container = av.open(source, options=options, timeout=(_OPEN_TIMEOUT_S, backstop))
        except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
            raise ClipSpotError(f"{source}: cannot open as video ({_reason(err)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise ClipSpotError(f"{source}: no video track")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = threads
        rate = self._stream.average_rate
        self.info = VideoInfo(
            width=self._stream.codec_context.width,
            height=self._stream.codec_context.height,
            fps=float(rate) if rate else None,
            frame_count=self._stream.frames or None,
            duration_s=self._container.duration / 1e6 if self._container.duration else None,
        )

    def __iter__(self) -> Iterator[VideoFrame]:
        index = 0
        try:
            for frame in self._container.decode(self._stream):
                yield VideoFrame(index, frame.time, frame.to_ndarray(format="rgb24"))
                index += 1
        except av.FFmpegError as err:
            raise VideoReadError(
                f"{self.source}: cannot decode video at frame {index} ({_reason(err)})",
                index,
                _reason(err),
            ) from None
        finally:
            self._container.close()
        if index == 0:
            raise ClipSpotError(f"{self.source}: no decodable video frames")

    def close(self) -> None:
        self._container.close()


def _url_options(source: str, read_timeout_s: float) -> dict[str, str]:
    """FFmpeg's own socket timeouts (microseconds): a silent source fails with "Connection timed
    out"; av.open's read timeout (an interrupt callback) backs them up for every protocol."""
    scheme = source.split(":", 1)[0].lower()
    micros = str(int(read_timeout_s * 1e6))
    if scheme in ("rtsp", "rtsps"):
        return {"rtsp_transport": "tcp", "timeout": micros}
    if scheme in ("http", "https"):
        return {"rw_timeout": micros}
    return {}


def _reason(err: BaseException) -> str:
    # FFmpeg errors repeat the file name in str(err); keep only the reason.
    return getattr(err, "strerror", None) or str(err)


def iter_input(source: str, threads: int = 0) -> Iterator[tuple[str, VideoFrame]]:
    """(source name, frame) for every image or frame of an input, in order.

    The source name is the input as given for an image or a video, and each image's own path
    for a directory, which is what the JSON Lines `source` field carries.
    """
    kind = input_kind(source)
    if kind == "video":
        for frame in VideoReader(source, threads=threads):
            yield source, frame
        return
    paths = list_images(source) if kind == "directory" else [Path(source)]
    for path in paths:
        name = source if kind == "image" else str(path)
        yield name, VideoFrame(0, None, read_image(path))
