"""`clipspot train detector|recognizer`: resumable training on ../shared/data (+ synthetic data).

Runs in the foreground with a progress bar; rerun the same command to resume from
OUT/last.pt. `--init-from` warm-starts (e.g. from the shipped weights). See docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.errors import ClipSpotError

DATA = "../shared/data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["detector", "recognizer"], help="which network to train")
    parser.add_argument("--out", help="run folder (default runs/det or runs/rec)")
    parser.add_argument("--steps", type=int, help="total optimizer steps (a resumed run continues)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    parser.add_argument("--init-from", help="warm-start from weights or a checkpoint")
    parser.add_argument("--data", default=DATA, help=f"shared data root (default {DATA})")
    parser.add_argument("--synth-fraction", type=float, help="share of synthetic samples")
    det = parser.add_argument_group("detector only")
    det.add_argument(
        "--variant", default="cr50_cpu",
        help="cr50_cpu (default), cr50_full, cr50_tiny; cr50_cpu_plain = no CLIP-side modules",
    )
    det.add_argument(
        "--clip-weights", help="real OpenAI CLIP RN50 file (TorchScript or state dict)"
    )
    det.add_argument("--crop", type=int, help="square training crop (default 512)")
    det.add_argument("--workers", type=int, help="data-loading processes (default 1)")
    det.add_argument("--train-images", type=int,
                     help="few-shot: train on this many of img_1-800, evenly spread")
    det.add_argument("--seed", type=int, help="sampling and initialisation seed (default 0)")
    det.add_argument("--val-every", type=int, help="validate on img_801-900 every N steps")
    det.add_argument("--minutes", type=float,
                     help="stop after this many minutes (validate and save first)")
    rec = parser.add_argument_group("recognizer only")
    rec.add_argument(
        "--fonts", help="fonts for synthetic word crops (e.g. DATA/synth_assets/fonts)"
    )
    rec.add_argument(
        "--synth-shards", help="folder of pre-rendered crops (`clipspot synth words`), re-scanned"
    )


def _given(args: argparse.Namespace, **names: str) -> dict:
    """Only the options the user set, so the config dataclasses keep their own defaults."""
    return {
        field: getattr(args, attr)
        for field, attr in names.items()
        if getattr(args, attr) is not None
    }


def run(args: argparse.Namespace) -> int:
    if args.what == "detector":
        from pipeline.train.detector_training import DetectorTrainConfig, train_detector

        if args.clip_weights and args.variant != "cr50_full":
            raise ClipSpotError("--clip-weights needs --variant cr50_full (real RN50 widths)")
        cfg = DetectorTrainConfig(
            ic15_root=f"{args.data}/ic15_train",
            out_dir=args.out or "runs/det",
            variant=args.variant,
            threads=args.threads,
            device=args.device,
            backbone_lr_mult=0.1 if args.clip_weights else 1.0,
            **_given(
                args,
                steps="steps",
                batch_size="batch_size",
                lr="lr",
                init_from="init_from",
                clip_weights="clip_weights",
                crop="crop",
                synth_fraction="synth_fraction",
                max_minutes="minutes",
                workers="workers",
                train_images="train_images",
                seed="seed",
                val_every="val_every",
            ),
        )
        result = train_detector(cfg)
    else:
        from pipeline.train.recognizer_training import RecognizerTrainConfig, train_recognizer

        cfg = RecognizerTrainConfig(
            ic15_words_root=f"{args.data}/ic15_words_train",
            iiit5k_root=f"{args.data}/iiit5k_train",
            ic15_images_root=f"{args.data}/ic15_train",
            out_dir=args.out or "runs/rec",
            threads=args.threads,
            device=args.device,
            synth_fonts_dir=args.fonts,
            synth_backgrounds_dir=f"{args.data}/synth_assets/backgrounds" if args.fonts else None,
            **_given(
                args,
                steps="steps",
                batch_size="batch_size",
                lr="lr",
                init_from="init_from",
                synth_fraction="synth_fraction",
                synth_shards_dir="synth_shards",
            ),
        )
        result = train_recognizer(cfg)
    print(json.dumps(result, default=str), file=sys.stderr)
    return 0
