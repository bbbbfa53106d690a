"""Draw what ClipSpot read over the image, and write annotated images or an H.264 MP4.

    annotated = draw_instances(rgb, result.instances)
    with VideoWriter("out.mp4", fps=25) as writer:
        writer.write(annotated, pts=result.pts)

Polygons are drawn in a colour fixed by the track id (so a word keeps its colour across frames;
untracked words are green), with a label "text  score  #id" above the polygon's top-left point.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from pipeline.errors import ClipSpotError
from pipeline.types import TextInstance

_UNTRACKED = (0, 220, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def track_colour(track_id: int | None) -> tuple[int, int, int]:
    """A bright RGB colour per track id, stable across frames and runs."""
    if track_id is None:
        return _UNTRACKED
    hue = (track_id * 47) % 180  # 47 is coprime with 180: consecutive ids get distant hues
    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def _label(instance: TextInstance) -> str:
    parts = [instance.text or "?", f"{instance.score:.2f}"]
    if instance.track_id is not None:
        parts.append(f"#{instance.track_id}")
    # OpenCV's Hershey fonts draw ASCII only; other characters would come out as '?' anyway.
    return "  ".join(parts).encode("ascii", "replace").decode("ascii")


def draw_instances(image: np.ndarray, instances: Sequence[TextInstance]) -> np.ndarray:
    """A copy of an RGB uint8 image with each instance's polygon and label drawn on it."""
    canvas = np.ascontiguousarray(image).copy()
    scale = max(0.4, min(canvas.shape[:2]) / 900)
    thickness = max(1, round(scale * 2))
    for instance in instances:
        colour = track_colour(instance.track_id)
        points = np.round(np.asarray(instance.polygon, dtype=np.float64)).astype(np.int32)
        cv2.polylines(canvas, [points.reshape(-1, 1, 2)], True, colour, thickness, cv2.LINE_AA)
        label = _label(instance)
        (width, height), base = cv2.getTextSize(label, _FONT, scale, thickness)
        x = int(np.clip(points[:, 0].min(), 0, max(0, canvas.shape[1] - width)))
        y = int(np.clip(points[:, 1].min() - 4, height + base, canvas.shape[0] - 1))
        cv2.rectangle(canvas, (x, y - height - base), (x + width, y + base), (0, 0, 0), -1)
        cv2.putText(canvas, label, (x, y), _FONT, scale, colour, thickness, cv2.LINE_AA)
    return canvas


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB image; the format follows the file suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1])):
        raise ClipSpotError(f"{path}: cannot write image (unsupported suffix or unwritable)")


class VideoWriter:
    """H.264 MP4 writer (PyAV, libx264, yuv420p) opened on the first frame.

    Frames are timed by their pts when given (kept to the millisecond, so variable frame
    rates and non-zero starts survive), else by `fps`. Odd sizes are padded by one pixel
    because yuv420p needs even dimensions.
    """

    def __init__(self, path: str | Path, fps: float = 25.0, crf: int = 23) -> None:
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else 25.0
        self.crf = crf
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._count = 0
        self._last_pts = -1

    def _open(self, height: int, width: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._container = av.open(str(self.path), "w")
        except (av.FFmpegError, OSError) as err:
            raise ClipSpotError(f"{self.path}: cannot write video ({err})") from None
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        self._stream = stream

    def write(self, image: np.ndarray, pts: float | None = None) -> None:
        if self._container is None:
            self._open(*image.shape[:2])
        assert self._stream is not None and self._container is not None
        height, width = self._stream.height, self._stream.width
        if image.shape[:2] != (height, width):
            image = cv2.copyMakeBorder(
                image, 0, height - image.shape[0], 0, width - image.shape[1], cv2.BORDER_REPLICATE
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        millis = round(pts * 1000) if pts is not None else round(self._count * 1000 / self.fps)
        frame.pts = max(millis, self._last_pts + 1)  # strictly increasing, as MP4 requires
        frame.time_base = Fraction(1, 1000)
        self._last_pts = frame.pts
        self._container.mux(self._stream.encode(frame))
        self._count += 1

    def close(self) -> None:
        if self._container is None:
            return
        assert self._stream is not None
        self._container.mux(self._stream.encode(None))
        self._container.close()
        self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
