"""`clipspot spot INPUT`: read the text in an image, a folder of images, a video or a stream URL.

    clipspot spot street.mp4 --out street.jsonl --render street_annotated.mp4 --detect-every 2
    clipspot spot street.mp4 --captions street.vtt --events street_tracks.jsonl

JSON Lines go to stdout (or --out), one line per image or frame (pipeline/jsonl.py); progress
and the final summary go to stderr. Video is tracked, so `track_id` is filled and each word's
text is its track's voted text; images have `track_id` null. `--render` writes the annotated
result: an MP4 for video, an image file for one image, a folder of images for a folder. On
video, `--events` writes each track's start, text updates and end (the lines `clipspot stream
--events` writes) and `--captions` one WebVTT or SRT cue per track (pipeline/captions.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import cv2
from tqdm import tqdm

from pipeline.captions import caption_format
from pipeline.decode import IMAGE_SUFFIXES, input_kind, iter_input
from pipeline.errors import ClipSpotError
from pipeline.jsonl import write_frame_result, write_items
from pipeline.live_source import DEFAULT_RECONNECT_S, is_live_url, show_live_log
from pipeline.render import VideoWriter, draw_instances, write_image
from pipeline.runner import RunnerConfig, run_images
from pipeline.types import FrameResult
from pipeline.video_job import VideoJob, runner_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="image, folder of images, video file, or stream URL")
    parser.add_argument("--out", help="write JSON Lines here instead of stdout")
    parser.add_argument(
        "--render", help="annotated output: .mp4 for video, an image file or a folder for images"
    )
    parser.add_argument(
        "--captions", help="video: write one caption per text track here (.vtt or .srt)"
    )
    parser.add_argument(
        "--events", help="video: write track events (started/updated/ended) as JSON Lines here"
    )
    parser.add_argument("--weights", help="ClipSpot weights file (default: the shipped weights)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--max-side",
        type=int,
        help="never give the network an image longer than N pixels (default 1440)",
    )
    parser.add_argument(
        "--reader",
        help="word reader: clipspot-ctc (ours, trained here) or ppocrv6 (PP-OCRv6 rec small, "
        "from rapidocr); default: the one the weights were calibrated to prefer",
    )
    parser.add_argument(
        "--no-lexicon",
        action="store_true",
        help="read without the English dictionary, even where the weights use it",
    )
    parser.add_argument(
        "--input-scale",
        type=float,
        help="enlarge (or shrink) images by this factor before detection (default: the weights')",
    )
    parser.add_argument(
        "--detect-every",
        type=int,
        default=RunnerConfig.detect_every,
        metavar="K",
        help="video: at most K frames between keyframes; words are followed by image motion "
        f"between them (default {RunnerConfig.detect_every})",
    )
    parser.add_argument(
        "--keyframes",
        choices=("adaptive", "fixed"),
        default="adaptive",
        help="video: adaptive (default) also detects at once on a cut, a large motion or lost "
        "words; fixed detects exactly every K-th frame",
    )
    parser.add_argument(
        "--every-frame",
        action="store_true",
        help="video: detect and read every frame (slowest, the reference for accuracy)",
    )
    parser.add_argument(
        "--reconnect-for",
        type=float,
        default=DEFAULT_RECONNECT_S,
        metavar="SECONDS",
        help="stream URL: when the camera drops, reconnect for this long; frame numbers and "
        f"pts go on rising (default {DEFAULT_RECONNECT_S:g}; 0: end at the first drop)",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="frames per model call")
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads for the model and decoder (0: auto)"
    )


def run(args: argparse.Namespace) -> int:
    if args.detect_every < 1 or args.batch_size < 1 or (args.max_side or 32) < 32:
        raise ClipSpotError("--detect-every and --batch-size must be >= 1, --max-side >= 32")
    if args.input_scale is not None and not 0.1 <= args.input_scale <= 4:
        raise ClipSpotError(f"--input-scale must be between 0.1 and 4, got {args.input_scale}")
    if args.reconnect_for < 0:
        raise ClipSpotError(f"--reconnect-for must be >= 0 seconds, got {args.reconnect_for}")
    kind = input_kind(args.input)  # a missing path fails here, before the model loads
    _check_video_outputs(args, kind)
    _set_threads(args.threads)
    from pipeline.model.word_reader import check_reader_name
    from pipeline.spotter import Spotter  # torch import: only once the input is known good

    check_reader_name(args.reader)

    spotter = Spotter.load(
        args.weights,
        device=args.device,
        max_side=args.max_side,
        input_scale=args.input_scale,
        lexicon=not args.no_lexicon,
        reader=args.reader,
        threads=args.threads or None,
    )
    with ExitStack() as stack:
        out = _open(stack, args.out) if args.out else sys.stdout
        if kind == "video":
            events_out = _open(stack, args.events) if args.events else None
            summary = _spot_video(args, spotter, out, events_out)
        else:
            summary = _spot_images(args, spotter, out, kind)
    target = args.out or "stdout"
    render = f", annotated output in {args.render}" if args.render else ""
    render += f", captions in {args.captions}" if args.captions else ""
    render += f", track events in {args.events}" if args.events else ""
    model = f"model {spotter.checksum} (reader {_reader_name(spotter)})"
    print(f"clipspot spot: {summary}; {model}; JSON Lines in {target}{render}", file=sys.stderr)
    return 0


def _check_video_outputs(args: argparse.Namespace, kind: str) -> None:
    """--captions and --events describe tracks, which only video has; checked before loading."""
    for flag, value in (("--captions", args.captions), ("--events", args.events)):
        if value and kind != "video":
            raise ClipSpotError(f"{flag} needs a video input; {args.input} is not a video")
    if args.captions:
        caption_format(args.captions)


def _open(stack: ExitStack, path: str) -> IO[str]:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return stack.enter_context(open(path, "w", encoding="utf-8"))
    except OSError as err:
        raise ClipSpotError(f"{path}: cannot write ({err.strerror})") from None


def _reader_name(spotter: object) -> str:
    reader = getattr(spotter, "reader", None)
    return reader.name if reader is not None else "none"


def _set_threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)


def _spot_video(
    args: argparse.Namespace, spotter: object, out: IO[str], events_out: IO[str] | None
) -> str:
    config = runner_config(args.detect_every, args.keyframes, args.every_frame, args.batch_size)
    if is_live_url(args.input):
        show_live_log("clipspot spot")
    job = VideoJob(spotter, args.input, config, threads=max(args.threads, 0),  # type: ignore[arg-type]
                   reconnect_for_s=args.reconnect_for)
    if args.render and Path(args.render).suffix.lower() != ".mp4":
        raise ClipSpotError(f"{args.render}: --render for a video must be an .mp4 file")
    images = {}  # frame index -> image, kept only until rendered

    def frames() -> Iterator:
        for frame in job.reader:
            if args.render:
                images[frame.index] = frame.image
            yield frame

    words = 0
    progress = tqdm(
        total=job.info.frame_count, unit="frame", file=sys.stderr, leave=False, disable=None
    )
    try:
        with ExitStack() as stack:
            writer = None
            if args.render:
                writer = stack.enter_context(VideoWriter(args.render, fps=job.info.fps or 25.0))
            for result in write_items(job.items(frames()), out, events_out):
                words += len(result.instances)
                if writer is not None:
                    image = images.pop(result.frame)
                    writer.write(draw_instances(image, result.instances), result.pts)
                progress.update(1)
    finally:
        progress.close()
        if args.captions:  # also on Ctrl-C: a live stream's captions up to there
            job.captions.write(args.captions)
    runner = job.runner
    spent = ", ".join(f"{k} {v / max(1, runner.frames_seen) * 1000:.1f}" for k, v in
                      runner.seconds.items())
    return (
        f"{runner.frames_seen} frames ({runner.frames_spotted} spotted, {runner.words_read} "
        f"words read), {words} words, {runner.tracker.tracks_started} tracks; ms per frame: "
        f"{spent}"
    )


def _spot_images(args: argparse.Namespace, spotter: object, out: IO[str], kind: str) -> str:
    render_dir = None
    if args.render:
        is_file = kind == "image" and Path(args.render).suffix.lower() in IMAGE_SUFFIXES
        render_dir = None if is_file else Path(args.render)
    images = {}  # source -> image, kept only until rendered

    def named() -> Iterator:
        for source, frame in iter_input(args.input, threads=max(args.threads, 0)):
            if args.render:
                images[source] = frame.image
            yield source, frame.image

    count = words = 0
    results: Iterator[FrameResult] = run_images(spotter, named(), args.batch_size)  # type: ignore[arg-type]
    for result in tqdm(results, unit="image", file=sys.stderr, leave=False, disable=None):
        write_frame_result(result, out)
        count += 1
        words += len(result.instances)
        if args.render:
            annotated = draw_instances(images.pop(result.source), result.instances)
            name = Path(result.source).name
            write_image(render_dir / name if render_dir else Path(args.render), annotated)
    return f"{count} images, {words} words"
