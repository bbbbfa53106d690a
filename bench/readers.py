"""Word accuracy of each reader, with and without the English dictionary (benchmark, not a test).

    .venv/bin/python -m bench.readers                          # validation sets, all readers
    .venv/bin/python -m bench.readers --split tune

Sets (from ../shared/data, split as pipeline/data/splits.py says):
- `ic15_crops`: the IC15 word-recognition crops of the split's images (validation: word_3961-4468);
- `iiit5k`: IIIT5K crops (validation: the last 200 lines of train.tags);
- `ic15_scene`: the split's IC15 words cut from the 960x640 images by `rectify_word` along their
  annotated quads, at each reader's own crop height, as spotting cuts them.
Accuracy is case-insensitive exact match of letters and digits (`image_texts_match`, the
end-to-end rule), over the words whose label the character set can write. Prints a Markdown
table and the machine it ran on; `--json FILE` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.common import DATA, cpu_model, log
from pipeline.data.readers import icdar_gt_path, read_icdar_gt
from pipeline.data.splits import ic15_images, ic15_words, iiit5k_words
from pipeline.eval.text_match import image_texts_match
from pipeline.model.lexicon import Lexicon, LexiconConfig
from pipeline.model.rectify import rectify_word
from pipeline.model.word_reader import READER_NAMES, read_words
from pipeline.spotter import Spotter
from pipeline.train.word_data import load_crop


def word_sets(data: Path, split: str, crop_height: int) -> dict[str, tuple[list, list[str]]]:
    """name -> (RGB crops, labels)."""
    sets = {}
    crops = ic15_words(data / "ic15_words_train", split)
    sets["ic15_crops"] = ([load_crop(c.path) for c in crops], [c.text for c in crops])
    crops = iiit5k_words(data / "iiit5k_train", split)
    sets["iiit5k"] = ([load_crop(c.path) for c in crops], [c.text for c in crops])
    images, labels = [], []
    for path in ic15_images(data / "ic15_train", split):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)  # the full frame
        for word in read_icdar_gt(icdar_gt_path(path)):
            if not word.dont_care:
                images.append(rectify_word(image, word.polygon, height=crop_height))
                labels.append(word.text)
    sets["ic15_scene"] = (images, labels)
    return sets


def accuracy(readings: list, labels: list[str]) -> float:
    return float(
        np.mean([image_texts_match(t, r.text) for r, t in zip(readings, labels, strict=True)])
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("tune", "val"), default="val")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--weights", default=None, help="weights file (default: shipped)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict[str, dict] = {}
    for name in READER_NAMES:
        spotter = Spotter.load(args.weights, reader=name, threads=args.threads)
        reader = spotter.reader
        lexicon = Lexicon(
            reader.charset, LexiconConfig(margin=spotter.postprocess.lexicon_margin or 3.0)
        )
        results[name] = {}
        for set_name, (crops, labels) in word_sets(
            args.data, args.split, reader.crop_height
        ).items():
            keep = [i for i, t in enumerate(labels) if reader.charset.covers(t)]
            crops, labels = [crops[i] for i in keep], [labels[i] for i in keep]
            start = time.perf_counter()
            plain = read_words(reader, crops)
            ms = 1000 * (time.perf_counter() - start) / max(1, len(crops))
            helped = read_words(reader, crops, lexicon)
            results[name][set_name] = {
                "words": len(crops),
                "plain": accuracy(plain, labels),
                "dictionary": accuracy(helped, labels),
                "ms_per_word": ms,
            }
            log(f"{name} {set_name}: {results[name][set_name]}")
    print(f"| reader | set ({args.split}) | words | plain | with dictionary | ms per word |")
    print("|---|---|---:|---:|---:|---:|")
    for name, sets in results.items():
        for set_name, r in sets.items():
            print(
                f"| {name} | {set_name} | {r['words']} | {r['plain']:.3f} | "
                f"{r['dictionary']:.3f} | {r['ms_per_word']:.1f} |"
            )
    print(f"\nCPU {cpu_model()}, {args.threads} threads; reading batched per set")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
