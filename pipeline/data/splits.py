"""The project's fixed splits of ../shared/data: train, tune, and validation scored once.

- IC15 images: `img_1`-`img_800` train; `img_801`-`img_900` tune (checkpoints, thresholds and
  calibrations are chosen here); `img_901`-`img_1000` validation (scored once, for the numbers
  reported; never trained or tuned on).
- IC15 word crops: the legible words of `img_1`-`img_1000` in order, so they follow their
  images: `word_1`-`word_3543` train, `word_3544`-`word_3960` tune, `word_3961`-`word_4468`
  validation.
- IIIT5K: the last 200 lines of train.tags are validation, the 200 before them tune.

Weights shipped before the tune split existed (up to checksum ac2a271eea2f) were trained on
`img_1`-`img_900`, tune images included: their tune-split numbers are optimistic.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.readers import WordCrop, image_number, read_ic15_word_gt, read_iiit5k_tags
from pipeline.errors import ClipSpotError

SPLITS = ("train", "tune", "val")
IC15_TUNE_FIRST_IMAGE = 801
IC15_VAL_FIRST_IMAGE = 901
IC15_TUNE_FIRST_WORD = 3544
IC15_VAL_FIRST_WORD = 3961
IIIT5K_VAL_COUNT = 200
IIIT5K_TUNE_COUNT = 200


def _split_of(number: int, tune_first: int, val_first: int) -> str:
    if number >= val_first:
        return "val"
    return "tune" if number >= tune_first else "train"


def _check(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")


def ic15_images(root: str | Path, split: str) -> list[Path]:
    """Image paths of `root/images/img_N.jpg` of one split, in numeric order."""
    _check(split)
    images = sorted(Path(root, "images").glob("img_*.jpg"), key=image_number)
    if not images:
        raise ClipSpotError(f"{root}: no images/img_N.jpg found (expected an IC15-style folder)")
    first = (IC15_TUNE_FIRST_IMAGE, IC15_VAL_FIRST_IMAGE)
    return [p for p in images if _split_of(image_number(p), *first) == split]


def ic15_words(root: str | Path, split: str) -> list[WordCrop]:
    """IC15 word crops of one split (they follow their images)."""
    _check(split)
    crops = read_ic15_word_gt(Path(root, "gt.txt"))
    first = (IC15_TUNE_FIRST_WORD, IC15_VAL_FIRST_WORD)
    return [c for c in crops if _split_of(image_number(c.path), *first) == split]


def iiit5k_words(root: str | Path, split: str) -> list[WordCrop]:
    """IIIT5K crops of one split: validation the last 200 lines, tune the 200 before."""
    _check(split)
    crops = read_iiit5k_tags(Path(root, "train.tags"))
    tune_end = len(crops) - IIIT5K_VAL_COUNT
    bounds = {
        "train": (0, tune_end - IIIT5K_TUNE_COUNT),
        "tune": (tune_end - IIIT5K_TUNE_COUNT, tune_end),
        "val": (tune_end, len(crops)),
    }
    low, high = bounds[split]
    return crops[low:high]
