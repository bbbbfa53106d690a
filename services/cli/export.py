"""`clipspot export`: pack detector + recognizer checkpoints into one inference weights file."""

from __future__ import annotations

import argparse
import sys

from pipeline.errors import ClipSpotError
from pipeline.model.checkpoint import build_detector, pack_weights, read_checkpoint
from pipeline.model.postprocess import PostprocessConfig
from pipeline.model.preprocess import CLIP_MEAN, CLIP_STD


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detector", required=True, help="detector checkpoint (runs/det/best.pt)")
    parser.add_argument("--recognizer", help="recognizer checkpoint (runs/rec/best.pt)")
    parser.add_argument("--out", required=True, help="weights file to write (fp16)")
    defaults = PostprocessConfig()
    post = parser.add_argument_group("post-processing stored with the weights (tune on train data)")
    post.add_argument("--binary-threshold", type=float, default=defaults.binary_threshold)
    post.add_argument("--box-threshold", type=float, default=defaults.box_threshold)
    post.add_argument("--unclip-ratio", type=float, default=defaults.unclip_ratio)
    post.add_argument("--min-word-score", type=float, default=defaults.min_word_score)
    post.add_argument(
        "--lexicon-margin",
        type=float,
        default=defaults.lexicon_margin,
        help="correct reads to English words within this many nats (default: no dictionary)",
    )
    post.add_argument(
        "--input-scale",
        type=float,
        default=defaults.input_scale,
        help="enlarge images by this factor before detection (capped by --max-side at run time)",
    )


def run(args: argparse.Namespace) -> int:
    det = read_checkpoint(args.detector)
    if det.get("kind") != "detector":
        raise ClipSpotError(f"{args.detector}: not a detector training checkpoint")
    detector = build_detector(det["config"], det["model"], args.detector)
    recognizer = None
    metrics = {"detector_step": det.get("step"), "val_detection_hmean": det.get("best_hmean")}
    if args.recognizer:
        rec = read_checkpoint(args.recognizer)
        if rec.get("kind") != "recognizer":
            raise ClipSpotError(f"{args.recognizer}: not a recognizer checkpoint")
        recognizer = {
            **rec,
            "state_dict": {
                k: v.half() if v.is_floating_point() else v for k, v in rec["state_dict"].items()
            },
        }
        recognizer.pop("optimizer", None)
        metrics["recognizer"] = rec.get("metrics")
    post = PostprocessConfig(
        binary_threshold=args.binary_threshold,
        box_threshold=args.box_threshold,
        unclip_ratio=args.unclip_ratio,
        min_word_score=args.min_word_score,
        input_scale=args.input_scale,
        lexicon_margin=args.lexicon_margin,
    )
    checksum = pack_weights(detector, recognizer, metrics, CLIP_MEAN, CLIP_STD, args.out, post)
    print(f"wrote {args.out} (checksum {checksum})", file=sys.stderr)
    return 0
