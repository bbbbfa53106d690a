"""The recognizer's alphabet: CTC class 0 is the blank, class i+1 is `chars[i]`.

Case is kept (the training labels have it and it costs 26 logits); case-insensitive scoring
folds it afterwards. Characters outside the alphabet cannot be produced: `encode` drops them
(or raises with `strict=True`) so a label with a rare symbol still trains on the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_CHARS = (
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,:;!?'\"-&/()@#%$+*[]=_<> "
)

BLANK = 0


@dataclass(frozen=True)
class Charset:
    """Maps text to CTC class ids and back (blank = 0)."""

    chars: str = DEFAULT_CHARS
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("charset has duplicate characters")
        object.__setattr__(self, "_index", {c: i + 1 for i, c in enumerate(self.chars)})

    @property
    def num_classes(self) -> int:
        """Number of CTC outputs, blank included."""
        return len(self.chars) + 1

    def covers(self, text: str) -> bool:
        return all(c in self._index for c in text)

    def encode(self, text: str, strict: bool = False) -> list[int]:
        """Class ids of `text`; unknown characters are dropped unless `strict`."""
        if strict and not self.covers(text):
            missing = sorted({c for c in text if c not in self._index})
            raise ValueError(f"characters not in charset: {missing!r}")
        return [self._index[c] for c in text if c in self._index]

    def decode(self, ids: list[int]) -> str:
        """Text of class ids (no CTC collapsing; blanks are skipped)."""
        return "".join(self.chars[i - 1] for i in ids if i != BLANK)

    def ctc_collapse(self, path: list[int]) -> list[int]:
        """Greedy CTC: merge repeats, then drop blanks."""
        out, prev = [], BLANK
        for i in path:
            if i != prev and i != BLANK:
                out.append(i)
            prev = i
        return out


def greedy_read(probs: np.ndarray, charset: Charset) -> tuple[str, float]:
    """One crop's (T, C) per-step probabilities -> (text, confidence), greedy CTC.

    The confidence is the mean of the per-step max probabilities over the steps that emit a
    character; an empty read is as confident as its blanks.
    """
    path = probs.argmax(-1)
    best = probs.max(-1)
    emit = (path != BLANK) & np.concatenate([[True], path[1:] != path[:-1]])
    text = charset.decode(path[emit].tolist())
    return text, float(best[emit].mean() if emit.any() else best.mean())
