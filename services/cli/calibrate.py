"""`clipspot calibrate`: fit each reader's word-score calibration and cut on the tune split.

    clipspot calibrate --ic15 ../shared/data/ic15_train --out weights/calibrated.pt

Detects every tune image (IC15 `img_801`-`img_900`) once, reads its words with every reader,
fits per reader a calibration (P(word is right), pipeline/model/calibration.py) and the cut that
maximises end-to-end hmean there, and writes a copy of the weights file carrying them, with the
reader of the best tune end-to-end hmean as the default. Validation (`img_901`-`img_1000`) is
never touched: score it once afterwards with `clipspot spot` + `clipspot eval`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
from tqdm import tqdm

from pipeline.errors import ClipSpotError

TUNE_IMAGES = "801-900"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ic15", required=True, type=Path,
                        help="IC15-style folder with images/img_N.jpg and gt/gt_img_N.txt")
    parser.add_argument("--out", required=True, type=Path, help="calibrated weights file to write")
    parser.add_argument("--weights", help="weights file to calibrate (default: the shipped one)")
    parser.add_argument("--readers", default="clipspot-ctc,ppocrv6",
                        help="comma-separated readers to calibrate (default: all)")
    parser.add_argument("--images", default=TUNE_IMAGES, metavar="FIRST-LAST",
                        help=f"image numbers to fit on (default {TUNE_IMAGES}, the tune split; "
                             "never the validation images 901-1000)")
    parser.add_argument("--report", type=Path, help="also write the fit's numbers as JSON here")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: auto)")


def run(args: argparse.Namespace) -> int:
    from services.cli.evaluate import _parse_range

    low, high = _parse_range(args.images)
    if high >= 901:
        raise ClipSpotError(f"--images {args.images}: 901-1000 is validation; calibrate on tune")
    if not (args.ic15 / "images").is_dir() or not (args.ic15 / "gt").is_dir():
        raise ClipSpotError(f"{args.ic15}: expected images/ and gt/ (the IC15 layout)")
    names = [n.strip() for n in args.readers.split(",") if n.strip()]
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    from pipeline.data.readers import icdar_gt_path, image_number, read_icdar_gt
    from pipeline.model.checkpoint import read_checkpoint
    from pipeline.model.lexicon import Lexicon, LexiconConfig
    from pipeline.model.recognizer import load_recognizer
    from pipeline.model.word_reader import check_reader_name, load_reader
    from pipeline.spotter import Spotter, default_weights_path
    from pipeline.train.reader_calibration import calibrate_reader, collect_words

    for name in names:
        check_reader_name(name)
    spotter = Spotter.load(args.weights, lexicon=False)
    data = read_checkpoint(args.weights or default_weights_path())
    recognizer = load_recognizer(data["recognizer"]) if data.get("recognizer") else None
    margin = data.get("postprocess", {}).get("lexicon_margin")  # spot() reads with it
    readers = {}
    for name in names:
        reader = load_reader(name, recognizer, spotter.weights_checksum, args.threads or None)
        lexicon = Lexicon(reader.charset, LexiconConfig(margin=margin)) if margin else None
        readers[name] = (reader, lexicon)
    paths = sorted((args.ic15 / "images").glob("img_*.jpg"), key=image_number)
    paths = [p for p in paths if low <= image_number(p) <= high]
    if not paths:
        raise ClipSpotError(f"{args.ic15}/images: no img_N.jpg with N in {low}-{high}")
    ground_truth = {p.stem: read_icdar_gt(icdar_gt_path(p)) for p in paths}
    images = ((p.stem, cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)) for p in paths)
    progress = tqdm(images, total=len(paths), unit="image", file=sys.stderr, disable=None)
    records = collect_words(spotter, readers, progress, ground_truth)
    fitted_on = f"IC15 img_{low}-img_{high}, weights {spotter.weights_checksum}"
    results = {name: calibrate_reader(records[name], fitted_on) for name in names}
    best = max(names, key=lambda n: results[n].tune_metrics["end_to_end"]["hmean"])
    _write(args, data, results, best)
    report = {name: _summary(r) for name, r in results.items()} | {"default_reader": best}
    if args.report:
        args.report.write_text(json.dumps(report, indent=2))
    for name, r in results.items():
        e2e, det = r.tune_metrics["end_to_end"], r.tune_metrics["detection"]
        print(f"{name}: cut {r.calibration.min_word_score:.3f}, tune det H {det['hmean']:.3f}, "
              f"E2E P {e2e['precision']:.3f} R {e2e['recall']:.3f} H {e2e['hmean']:.3f}",
              file=sys.stderr)
    print(f"wrote {args.out} (default reader {best})", file=sys.stderr)
    return 0


def _summary(result) -> dict:  # type: ignore[no-untyped-def]
    return {
        "calibration": result.calibration.to_dict(),
        "tune": result.tune_metrics,
        "reliability": result.reliability,
    }


def _write(args: argparse.Namespace, data: dict, results: dict, best: str) -> None:
    import torch

    from pipeline.model.checkpoint import write_sha256

    data["readers"] = {name: r.calibration.to_dict() for name, r in results.items()}
    data["default_reader"] = best
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, args.out)
    # The record beside the weights must follow them, or the next load refuses the file.
    write_sha256(args.out)
