"""The project's fixed train/validation splits of ../shared/data (never train on validation).

- IC15 images: img_1..img_900 train, img_901..img_1000 validation.
- IC15 word crops: the legible words of img_1..img_1000 in order, so word_3961..word_4468 are
  exactly the validation images' words (validation).
- IIIT5K: the last 200 lines of train.tags are validation.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.readers import WordCrop, image_number, read_ic15_word_gt, read_iiit5k_tags
from pipeline.errors import ClipSpotError

IC15_VAL_FIRST_IMAGE = 901
IC15_VAL_FIRST_WORD = 3961
IIIT5K_VAL_COUNT = 200


def ic15_images(root: str | Path, split: str) -> list[Path]:
    """Image paths of `root/images/img_N.jpg` in numeric order for split 'train' or 'val'."""
    images = sorted(Path(root, "images").glob("img_*.jpg"), key=image_number)
    if not images:
        raise ClipSpotError(f"{root}: no images/img_N.jpg found (expected an IC15-style folder)")
    if split == "train":
        return [p for p in images if image_number(p) < IC15_VAL_FIRST_IMAGE]
    if split == "val":
        return [p for p in images if image_number(p) >= IC15_VAL_FIRST_IMAGE]
    raise ValueError(f"split must be 'train' or 'val', not {split!r}")


def ic15_words(root: str | Path, split: str) -> list[WordCrop]:
    crops = read_ic15_word_gt(Path(root, "gt.txt"))
    is_val = [image_number(c.path) >= IC15_VAL_FIRST_WORD for c in crops]
    return [c for c, v in zip(crops, is_val, strict=True) if v == (split == "val")]


def iiit5k_words(root: str | Path, split: str) -> list[WordCrop]:
    crops = read_iiit5k_tags(Path(root, "train.tags"))
    return crops[-IIIT5K_VAL_COUNT:] if split == "val" else crops[:-IIIT5K_VAL_COUNT]
