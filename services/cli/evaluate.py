"""`clipspot eval`: score a prediction file against ground truth by the ICDAR rules.

    clipspot eval --gt DIR_OF_gt_img_N.txt --pred preds.jsonl [--images 901-1000]
    clipspot eval --gt video_gt.json --pred preds.jsonl     (one video)
    clipspot eval --gt DIR_OF_video_gt.json --pred preds.jsonl   (videos matched by file name)
    clipspot eval --gt GT --as-pred [--out FILE] [--images 901-1000]

Prints one JSON object on stdout. Images: a prediction's `source` basename `img_N.jpg` maps to
`gt_img_N.txt`; ground-truth images with no prediction line count all their words as missed.
Videos: prediction lines are matched to ground-truth frames by `frame`. `--as-pred` writes the
ground truth itself as a prediction file (a self-check: scoring it gives 1.0 everywhere).
Rules: docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pipeline.data.readers import GroundTruthWord, image_number, read_icdar_gt
from pipeline.data.video_gt import VideoGroundTruth, read_video_gt
from pipeline.errors import ClipSpotError
from pipeline.eval.image_protocol import evaluate_images
from pipeline.eval.video_protocol import evaluate_video, mean_over_videos
from pipeline.jsonl import read_frame_results, write_frame_result
from pipeline.types import FrameResult, TextInstance


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, type=Path,
                        help="folder of gt_img_N.txt, a video ground-truth JSON, "
                             "or a folder of video ground-truth JSONs")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--pred", type=Path, help="prediction file (JSON Lines) to score")
    mode.add_argument("--as-pred", action="store_true",
                      help="write the ground truth as a prediction file instead of scoring")
    parser.add_argument("--out", type=Path, help="with --as-pred: write here, not to stdout")
    parser.add_argument("--images", metavar="FIRST-LAST",
                        help="images only: keep gt_img_N.txt with FIRST <= N <= LAST "
                             "(e.g. 901-1000, the IC15 validation split)")


def run(args: argparse.Namespace) -> int:
    if args.out is not None and not args.as_pred:
        raise ClipSpotError("--out goes with --as-pred (scores always go to stdout)")
    image_range = _parse_range(args.images) if args.images else None
    if _is_image_gt(args.gt):
        gt = _read_image_gt(args.gt, image_range)
        if args.as_pred:
            with _output(args.out) as out:
                for result in _image_gt_as_predictions(args.gt, gt):
                    write_frame_result(result, out)
            return 0
        metrics = evaluate_images(gt, _read_image_predictions(args.pred, gt, image_range))
    else:
        if image_range is not None:
            raise ClipSpotError("--images applies to image ground truth (gt_img_N.txt) only")
        videos = _read_video_gts(args.gt)
        if args.as_pred:
            with _output(args.out) as out:
                for video in videos:
                    for result in _video_gt_as_predictions(video):
                        write_frame_result(result, out)
            return 0
        metrics = _evaluate_videos(videos, args.pred)
    print(json.dumps(metrics))
    return 0


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    try:
        with path.open("w", encoding="utf-8") as out:
            yield out
    except OSError as err:
        raise ClipSpotError(f"{path}: cannot write ({err.strerror})") from None


def _parse_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    try:
        low, high = int(first), int(last)
    except ValueError:
        low, high = 1, 0
    if not sep or low > high:
        raise ClipSpotError(f"--images {text!r}: expected FIRST-LAST, e.g. 901-1000")
    return low, high


def _is_image_gt(path: Path) -> bool:
    if not path.exists():
        raise ClipSpotError(f"{path}: ground truth not found")
    return path.is_dir() and any(path.glob("gt_*.txt"))


# --- images -----------------------------------------------------------------------------------

ImageGroundTruth = dict[str, list[GroundTruthWord]]  # "img_N" -> its words


def _read_image_gt(folder: Path, image_range: tuple[int, int] | None) -> ImageGroundTruth:
    """`img_N` -> its words, in numeric order, restricted to the range when one is given."""
    files = sorted(folder.glob("gt_*.txt"), key=image_number)
    if image_range is not None:
        files = [f for f in files if image_range[0] <= image_number(f) <= image_range[1]]
        if not files:
            low, high = image_range
            raise ClipSpotError(f"{folder}: no gt_img_N.txt with N in {low}-{high}")
    return {f.stem.removeprefix("gt_"): read_icdar_gt(f) for f in files}


def _read_image_predictions(path: Path, gt: ImageGroundTruth,
                            image_range: tuple[int, int] | None) -> dict[str, list[TextInstance]]:
    predictions: dict[str, list[TextInstance]] = {}
    for result in read_frame_results(path):
        name = Path(result.source).stem
        if image_range is not None and not image_range[0] <= image_number(name) <= image_range[1]:
            continue
        if name not in gt:
            raise ClipSpotError(f"{path}: prediction for {result.source!r} but there is no "
                                f"ground truth gt_{name}.txt")
        if name in predictions:
            raise ClipSpotError(f"{path}: {result.source!r} has two prediction lines")
        predictions[name] = list(result.instances)
    return predictions


def _image_gt_as_predictions(folder: Path, gt: ImageGroundTruth) -> Iterator[FrameResult]:
    images = folder.parent / "images"  # the IC15 layout: DIR/gt/gt_img_N.txt, DIR/images/img_N.jpg
    for name, words in gt.items():
        instances = tuple(TextInstance(polygon=w.polygon, text=w.text, score=1.0) for w in words)
        yield FrameResult(source=str(images / f"{name}.jpg"), frame=0, pts=None,
                          instances=instances)


# --- videos -----------------------------------------------------------------------------------

def _read_video_gts(path: Path) -> list[VideoGroundTruth]:
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise ClipSpotError(f"{path}: no gt_img_N.txt and no video ground-truth *.json")
        return [read_video_gt(f) for f in files]
    return [read_video_gt(path)]


def _evaluate_videos(videos: list[VideoGroundTruth], pred_path: Path) -> dict[str, Any]:
    """One video: every prediction line is its. Several: lines go by `source` file name."""
    lines = list(read_frame_results(pred_path))
    if len(videos) == 1:
        return mean_over_videos([evaluate_video(videos[0], lines)])
    by_name: dict[str, list[FrameResult]] = {Path(v.video).name: [] for v in videos}
    for line in lines:
        name = Path(line.source).name
        if name not in by_name:
            raise ClipSpotError(f"{pred_path}: prediction for {line.source!r}, which matches "
                                f"no ground-truth video ({', '.join(sorted(by_name))})")
        by_name[name].append(line)
    return mean_over_videos([evaluate_video(v, by_name[Path(v.video).name]) for v in videos])


def _video_gt_as_predictions(video: VideoGroundTruth) -> Iterator[FrameResult]:
    for frame in video.frames:
        instances = tuple(
            TextInstance(polygon=o.polygon, text=o.text, score=1.0, track_id=o.track_id)
            for o in frame.objects
        )
        yield FrameResult(source=video.video, frame=frame.frame, pts=frame.pts,
                          instances=instances)
