"""Run RapidOCR (rapidocr-onnxruntime) on images and write ClipSpot's JSON Lines predictions.

    .venv-peers/bin/python deploy/peers/rapidocr_spot.py IMAGES_DIR --images 901-1000 \
        --setting tuned --threads 1 --out out/peers/rapidocr_tuned.jsonl
    .venv/bin/clipspot eval --gt GT_DIR --pred out/peers/rapidocr_tuned.jsonl --images 901-1000

Runs in its own virtual environment (.venv-peers): rapidocr-onnxruntime pulls `opencv-python`,
which would replace the headless OpenCV build ClipSpot's own venv uses. So this file imports
nothing from `pipeline`; the line format is written here with the stdlib and mirrors
`pipeline/jsonl.py` (source, frame, pts, instances[polygon, text, score, track_id]).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

# Settings compared in deploy/peers/README.md. Keys are RapidOCR 1.4.4 constructor keywords
# (`det_*` go to its Det section, the rest to Global; see its config.yaml / parse_parameters.py).
SETTINGS: dict[str, dict] = {
    # The library's own defaults: det limit_side_len 736 (limit_type "min"), thresh 0.3,
    # box_thresh 0.5, text_score 0.5.
    "default": {},
    # What a user tuning for small scene text would try first: a larger detector side and
    # lower box/recognition-score thresholds.
    "tuned": {"det_limit_side_len": 960, "det_box_thresh": 0.3, "text_score": 0.2},
}

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def parse_range(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)-(\d+)", text)
    if not match or int(match[1]) > int(match[2]):
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST (e.g. 901-1000), got {text!r}")
    return int(match[1]), int(match[2])


def _number(path: Path) -> int | None:
    match = re.fullmatch(r"img_(\d+)", path.stem)
    return int(match[1]) if match else None


def list_inputs(source: Path, image_range: tuple[int, int] | None) -> list[Path]:
    """One image, or a folder's images in numeric order (optionally only img_N with N in range)."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise SystemExit(f"{source}: no such image or folder")
    files = [p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if image_range is not None:
        low, high = image_range
        files = [p for p in files if (n := _number(p)) is not None and low <= n <= high]
    files.sort(key=lambda p: (_number(p) is None, _number(p) or 0, p.name))
    if not files:
        raise SystemExit(f"{source}: no images to read")
    return files


def build_engine(setting: str, threads: int):
    from rapidocr_onnxruntime import RapidOCR  # only importable inside .venv-peers

    # intra/inter threads are Global keys copied to Det/Cls/Rec by RapidOCR itself.
    kwargs = dict(SETTINGS[setting], intra_op_num_threads=threads, inter_op_num_threads=1)
    return RapidOCR(**kwargs)


def to_instances(result: list | None) -> list[dict]:
    """RapidOCR rows [[4 points tl,tr,br,bl], text, score] -> ClipSpot instance dicts."""
    instances = []
    for box, text, score in result or []:
        instances.append({
            "polygon": [[round(float(x), 2), round(float(y), 2)] for x, y in box],
            "text": str(text),
            "score": round(float(score), 4),
            "track_id": None,
        })
    return instances


def run(args: argparse.Namespace) -> int:
    files = list_inputs(Path(args.source), args.images)
    engine = build_engine(args.setting, args.threads)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    engine(str(files[0]))  # warm-up: onnxruntime's first run allocates; not counted
    elapsed = 0.0
    try:
        for path in files:
            # Call without keyword arguments: RapidOCR 1.4.4's __call__ resets box_thresh,
            # unclip_ratio and text_score to its defaults whenever any keyword is passed.
            start = time.perf_counter()
            result, _ = engine(str(path))
            elapsed += time.perf_counter() - start
            line = {"source": str(path), "frame": 0, "pts": None,
                    "instances": to_instances(result)}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    summary = {"setting": args.setting, "config": SETTINGS[args.setting],
               "threads": args.threads, "images": len(files),
               "seconds_per_image": round(elapsed / len(files), 4)}
    print(json.dumps(summary), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="an image, or a folder of images")
    parser.add_argument("--images", type=parse_range, metavar="FIRST-LAST",
                        help="folder only: keep img_N.* with FIRST <= N <= LAST")
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="default")
    parser.add_argument("--threads", type=int, default=1,
                        help="onnxruntime intra-op threads (default 1: the machine is shared)")
    parser.add_argument("--out", help="JSON Lines file to write (default stdout)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
