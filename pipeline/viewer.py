"""A results viewer: one HTML page that plays a video with ClipSpot's words drawn over it.

    page = build_page("street.mp4", "street.jsonl", "street.html")
    print(page.summary())

Data flow: the video is probed (PyAV) and the JSON Lines read (pipeline/jsonl.py) and checked
against it (pts present, frames and pts within the video, polygons inside its frame, same
source name). The frames become a compact JSON table, the tracks a side list (first/last pts,
most frequent text), and both are pasted with the video into `viewer_page.html`, whose script
draws the polygons of the result at or before the playing frame on a <canvas> over the <video>.

The video: Debian's Chromium plays H.264, VP8, VP9 and AV1 in MP4/WebM (checked in the
browser by tests/test_viewer.py); anything else (MPEG-TS, AVI, HEVC, 10-bit, ...) is transcoded
to H.264 MP4 by pipeline/render.py's VideoWriter, keeping each frame's pts. Up to
`EMBED_LIMIT_BYTES` the video is embedded in the page (base64, turned into a Blob URL by the
page: data: URLs that long are not reliable as a media src); above it the page refers to the
video by a relative path, so page and video must be moved together.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import av

from pipeline.decode import VideoReader
from pipeline.errors import ClipSpotError
from pipeline.jsonl import read_frame_results
from pipeline.render import VideoWriter, track_colour
from pipeline.types import FrameResult

EMBED_LIMIT_BYTES = 100 * 1024 * 1024
# (container family, codec) pairs the browser plays as they are, 8-bit 4:2:0 only.
_MP4 = "mov,mp4,m4a,3gp,3g2,mj2"
_WEBM = "matroska,webm"
_PLAYABLE = {(_MP4, "h264"), (_MP4, "vp9"), (_MP4, "av1"),
             (_WEBM, "vp8"), (_WEBM, "vp9"), (_WEBM, "av1")}
_MARKER = re.compile(r"__(TITLE|DATA_JSON|VIDEO_JSON|VIDEO_BASE64)__")
_POLYGON_MARGIN = 0.25  # polygons may stick out of the frame a little, not by a quarter of it


@dataclass(frozen=True)
class VideoProbe:
    path: Path
    format_name: str
    codec: str
    pix_fmt: str
    width: int
    height: int
    frame_count: int | None
    duration: float | None  # seconds, from the container; None when it does not say

    @property
    def playable(self) -> bool:
        return (self.format_name, self.codec) in _PLAYABLE and self.pix_fmt in (
            "yuv420p", "yuvj420p")

    @property
    def mime(self) -> str:
        return "video/webm" if self.format_name == _WEBM else "video/mp4"


@dataclass(frozen=True)
class ViewerPage:
    path: Path
    frames: int
    tracks: int
    words: int
    video: str  # how the page holds the video: "embedded", "linked to PATH", "+ transcoded"
    linked: Path | None  # the video file the page refers to, when not embedded

    def summary(self) -> str:
        return (f"{self.frames} frames, {self.words} words, {self.tracks} tracks; "
                f"page in {self.path} (video {self.video})")


def probe_video(path: str | Path) -> VideoProbe:
    """What the page needs to know about a video file, without decoding it."""
    path = Path(path)
    if not path.is_file():
        raise ClipSpotError(f"{path}: video file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipSpotError(f"{path}: no video track")
            stream = container.streams.video[0]
            duration = container.duration / av.time_base if container.duration else None
            return VideoProbe(path, container.format.name, stream.codec_context.name,
                              stream.codec_context.pix_fmt or "", stream.codec_context.width,
                              stream.codec_context.height, stream.frames or None, duration)
    except (av.FFmpegError, UnicodeDecodeError) as err:
        raise ClipSpotError(f"{path}: cannot open as video ({err})") from None


def load_results(path: str | Path) -> list[FrameResult]:
    """A video's frame results, in frame order; image results (no pts) are refused."""
    results = sorted(read_frame_results(path), key=lambda r: r.frame)
    if not results:
        raise ClipSpotError(f"{path}: no frame lines")
    for result in results:
        if result.pts is None:
            raise ClipSpotError(f"{path}: frame {result.frame} of {result.source} has no pts "
                                "(results of images); the viewer shows a video's results")
    return results


def check_match(probe: VideoProbe, results: list[FrameResult], results_path: str | Path,
                check_source: bool = True) -> None:
    """Refuse results that cannot be this video's: another source name, frames or pts past
    its end, or polygons far outside its frame."""
    where = f"{results_path} does not match {probe.path}"
    names = {Path(r.source).name for r in results}
    if check_source and names != {probe.path.name}:
        raise ClipSpotError(f"{where}: results are for {', '.join(sorted(names))}")
    last = results[-1]
    if probe.frame_count is not None and last.frame >= probe.frame_count:
        raise ClipSpotError(f"{where}: frame {last.frame}, the video has {probe.frame_count}")
    pts_end = max(r.pts or 0.0 for r in results)
    if probe.duration is not None and pts_end > probe.duration + 0.5:
        raise ClipSpotError(f"{where}: pts {pts_end:.3f} s, the video lasts {probe.duration:.3f} s")
    limit_x = probe.width * (1 + _POLYGON_MARGIN)
    limit_y = probe.height * (1 + _POLYGON_MARGIN)
    for result in results:
        for inst in result.instances:
            if inst.polygon[:, 0].max() > limit_x or inst.polygon[:, 1].max() > limit_y:
                raise ClipSpotError(f"{where}: frame {result.frame} has a word outside the "
                                    f"{probe.width}x{probe.height} frame")


def track_rows(results: list[FrameResult]) -> list[dict[str, Any]]:
    """One row per track id: first/last pts, frames seen, its most frequent text, colour."""
    seen: dict[int, dict[str, Any]] = {}
    texts: dict[int, Counter[str]] = {}
    for result in results:
        for inst in result.instances:
            if inst.track_id is None:
                continue
            row = seen.setdefault(inst.track_id, {"id": inst.track_id, "first": result.pts,
                                                  "frames": 0, "colour": _hex(inst.track_id)})
            row["last"] = result.pts
            row["frames"] += 1
            texts.setdefault(inst.track_id, Counter())[inst.text] += 1
    for track_id, row in seen.items():
        # The voted text is on every instance already; the most frequent one is its steady
        # state (an empty reading only wins when the word was never read).
        counts = texts[track_id]
        read = Counter({t: n for t, n in counts.items() if t}) or counts
        row["text"] = read.most_common(1)[0][0]
    return sorted(seen.values(), key=lambda row: (row["first"], row["id"]))


def page_data(probe: VideoProbe, results: list[FrameResult], offset: float) -> dict[str, Any]:
    """The JSON the page script reads. `offset` is added to the media time to get result pts
    (non-zero when a transcode rebased the timeline to start at 0)."""
    frames = [
        {"f": r.frame, "t": r.pts, "i": [
            [inst.track_id, inst.text, round(float(inst.score), 3),
             [round(float(v), 1) for v in inst.polygon.reshape(-1)]]
            for inst in r.instances]}
        for r in results
    ]
    return {"name": probe.path.name, "width": probe.width, "height": probe.height,
            "offset": offset, "frames": frames, "tracks": track_rows(results),
            "untracked": _hex(None)}


def _hex(track_id: int | None) -> str:
    # The annotated MP4's colours (pipeline/render.py), so both outputs agree.
    return "#{:02x}{:02x}{:02x}".format(*track_colour(track_id))


def transcode(source: Path, target: Path) -> float:
    """Re-encode to H.264 MP4 with the frames' own pts, rebased to start at 0 (browsers start
    the timeline at 0); returns the first pts, which the page adds back."""
    reader = VideoReader(str(source))
    first: float | None = None
    with VideoWriter(target, fps=reader.info.fps or 25.0) as writer:
        for frame in reader:
            first = frame.pts if first is None else first
            pts = None if frame.pts is None or first is None else frame.pts - first
            writer.write(frame.image, pts)
    return first or 0.0


def build_page(video: str | Path, results_path: str | Path, out: str | Path,
               embed_limit: int = EMBED_LIMIT_BYTES, check_source: bool = True,
               video_url: str | None = None) -> ViewerPage:
    """Write the viewer page for a video and its JSON Lines to `out`.

    Args:
        video: the video the results were spotted on.
        results_path: `clipspot spot` / `clipspot stream` JSON Lines of that video.
        out: the .html file to write (its folder is created).
        embed_limit: embed videos up to this many bytes; larger ones are linked relatively
            (0: always link).
        check_source: refuse results whose `source` names another file.
        video_url: when linking, refer to the video by this URL instead of its relative path
            (`clipspot view --serve` serves it there).
    """
    probe = probe_video(video)
    results = load_results(results_path)
    check_match(probe, results, results_path, check_source)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        playable, offset, how, linked = probe.path, 0.0, "", None
        if not probe.playable:
            playable = Path(scratch) / "video.mp4"
            offset = transcode(probe.path, playable)
            how = ", transcoded to H.264"
        if playable.stat().st_size <= embed_limit:
            source, how = _embedded(playable), "embedded" + how
        else:
            if playable != probe.path:  # keep the transcode beside the page
                playable = Path(shutil.move(playable, out.with_suffix(".viewer.mp4")))
            linked = playable
            source = {"url": video_url or os.path.relpath(playable, out.parent), "b64": ""}
            how = f"linked to {playable}" + how
        mime = probe.mime if playable == probe.path else "video/mp4"
        page = render_page(page_data(probe, results, offset), source, mime)
    _write(out, page)
    words = sum(len(r.instances) for r in results)
    return ViewerPage(out, len(results), len(track_rows(results)), words, how, linked)


def _embedded(path: Path) -> dict[str, str]:
    return {"url": "", "b64": base64.b64encode(path.read_bytes()).decode("ascii")}


def render_page(data: dict[str, Any], source: dict[str, str], mime: str) -> str:
    """Fill the template: every value goes in as JSON (with '<' escaped, so no text read from
    a video can close the <script> element) or as base64."""
    template = resources.files("pipeline").joinpath("viewer_page.html").read_text("utf-8")
    data_json = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    video_json = json.dumps({"url": source["url"], "mime": mime}).replace("<", "\\u003c")
    values = {"TITLE": html.escape(data["name"]), "DATA_JSON": data_json,
              "VIDEO_JSON": video_json, "VIDEO_BASE64": source["b64"]}
    # One pass, so a value that happens to contain a marker is never substituted again.
    return _MARKER.sub(lambda match: values[match.group(1)], template)


def _write(out: Path, page: str) -> None:
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as err:
        raise ClipSpotError(f"{out}: cannot write ({err.strerror})") from None
