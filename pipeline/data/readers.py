"""Readers for the three annotation formats ClipSpot trains and scores on.

- ICDAR2015 detection: `gt_img_N.txt`, one word a line `x1,y1,...,x4,y4,transcription`
  (clockwise quad; `###` = unreadable, "don't care"). Files may start with a UTF-8 BOM and
  coordinates may be floats. Transcriptions may themselves contain commas: everything after the
  eighth comma is the text.
- IC15 word crops: `gt.txt` lines `word_N.png, "Text"` (BOM, CRLF, `\\"` escapes).
- IIIT5K: `train.tags` lines `images/NAME.png Word`.

Every malformed line raises ClipSpotError naming the file and the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ClipSpotError

DONT_CARE = "###"


@dataclass(frozen=True, eq=False)
class GroundTruthWord:
    """One annotated word of an image: a clockwise quad (4, 2) float32 and its text."""

    polygon: np.ndarray
    text: str

    @property
    def dont_care(self) -> bool:
        return self.text == DONT_CARE


@dataclass(frozen=True)
class WordCrop:
    """A cropped word image on disk and its label."""

    path: Path
    text: str


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ClipSpotError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ClipSpotError(f"{path}: not UTF-8 text ({err.reason})") from None
    return text.splitlines()


def read_icdar_gt(path: str | Path) -> list[GroundTruthWord]:
    """Read one ICDAR2015 detection ground-truth file."""
    path = Path(path)
    words = []
    for number, line in enumerate(_read_lines(path), start=1):
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        parts = line.split(",", 8)
        if len(parts) < 8:
            raise ClipSpotError(
                f"{path}:{number}: expected 'x1,y1,x2,y2,x3,y3,x4,y4,text', got {line[:60]!r}"
            )
        try:
            coords = np.array([float(v) for v in parts[:8]], dtype=np.float32).reshape(4, 2)
        except ValueError:
            raise ClipSpotError(
                f"{path}:{number}: coordinates are not numbers: {line[:60]!r}"
            ) from None
        text = parts[8] if len(parts) == 9 else ""
        words.append(GroundTruthWord(polygon=coords, text=text))
    return words


def icdar_gt_path(image_path: str | Path) -> Path:
    """`.../images/img_7.jpg` -> `.../gt/gt_img_7.txt` (the layout of shared/data/ic15_train)."""
    image_path = Path(image_path)
    return image_path.parent.parent / "gt" / f"gt_{image_path.stem}.txt"


def image_number(path: str | Path) -> int:
    """`img_37.jpg` / `gt_img_37.txt` / `word_37.png` -> 37."""
    stem = Path(str(path)).stem
    try:
        return int(stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        raise ClipSpotError(f"{path}: expected a name like img_N / word_N") from None


def read_ic15_word_gt(path: str | Path) -> list[WordCrop]:
    """Read the IC15 word-crop `gt.txt` (`word_N.png, "Text"` with `\\"` escapes)."""
    path = Path(path)
    crops = []
    for number, line in enumerate(_read_lines(path), start=1):
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        name, sep, quoted = line.partition(", ")
        quoted = quoted.strip()
        if not sep or len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
            raise ClipSpotError(
                f"{path}:{number}: expected 'word_N.png, \"Text\"', got {line[:60]!r}"
            )
        text = quoted[1:-1].replace('\\"', '"')
        crops.append(WordCrop(path=path.parent / name, text=text))
    return crops


def read_iiit5k_tags(path: str | Path) -> list[WordCrop]:
    """Read IIIT5K `train.tags` (`images/NAME.png Word`)."""
    path = Path(path)
    crops = []
    for number, line in enumerate(_read_lines(path), start=1):
        line = line.strip()
        if not line:
            continue
        name, sep, text = line.partition(" ")
        if not sep or not text:
            raise ClipSpotError(
                f"{path}:{number}: expected 'images/NAME.png Word', got {line[:60]!r}"
            )
        crops.append(WordCrop(path=path.parent / name, text=text))
    return crops
