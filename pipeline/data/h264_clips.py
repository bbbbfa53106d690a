"""Synthetic clips on disk: encode rendered frames as H.264 MP4, read their timestamps back.

Both synthetic video generators (`synth_video.py`, `camera_clips.py`) write through
`encode_h264`, so their files are encoded alike and are byte-for-byte reproducible; the ground
truth takes its pts from `read_back_pts`, i.e. from what a decoder will report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.data.video_gt import GroundTruthObject


def encode_h264(
    mp4_path: Path,
    size: tuple[int, int],
    fps: float,
    rendered: Iterable[tuple[np.ndarray, Sequence[GroundTruthObject]]],
    progress: Callable[[int], None] | None = None,
) -> list[tuple[GroundTruthObject, ...]]:
    """Encode rendered (RGB frame, its ground-truth objects) pairs as an H.264 MP4 of `size`;
    returns the objects per frame. Deterministic: the same frames give the same bytes."""
    rate = Fraction(fps).limit_denominator(1001)
    per_frame = []
    with av.open(str(mp4_path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.gop_size = max(1, round(2 * fps))
        # Same seed, same bytes: one thread, and no macroblock-tree rate control (with it, this
        # x264 gave different bytes for the same frames from one encode to the next).
        stream.codec_context.thread_count = 1
        stream.codec_context.options = {
            "crf": "20",
            "preset": "veryfast",
            "x264-params": "mbtree=0",
        }
        for index, (image, objects) in enumerate(rendered):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
            per_frame.append(tuple(objects))
            if progress:
                progress(1)
        container.mux(stream.encode(None))
    return per_frame


def read_back_pts(path: str | Path) -> list[float]:
    """Presentation times (seconds) of every decoded frame, in display order."""
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]
