"""Lexicon-aided reading: correct a CTC read to an English word when the network agrees.

ICDAR 2015's end-to-end task has a "generic vocabulary" setting: a general word list may be used,
but no list of the words in the image. This is that setting. The word list is the English
frequency dictionary that ships inside `symspellpy` (82,765 words, MIT licensed), installed from
PyPI with the package; nothing is downloaded at run time.

A greedy read that is not already a word is compared with the dictionary words within
`max_edit_distance` edits (symspellpy finds them in microseconds). Each candidate, written in
the read's letter case, is scored by the recognizer itself: its CTC negative log-likelihood under
the crop's per-step probabilities (every alignment summed, as in training). The best candidate
replaces the read only when it is at most `margin` nats less likely than the read: a confident
read of a name the dictionary does not know ("TOPSHOP", not "toyshop") stays as it was, while a
blurred "SINGAFORE" whose P was nearly an F becomes "SINGAPORE".

Reads with digits or symbols (prices, codes, times) and very short reads are never touched.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from symspellpy import SymSpell, Verbosity

from pipeline.model.charset import BLANK, Charset

DICTIONARY = "frequency_dictionary_en_82_765.txt"  # inside the symspellpy package


@dataclass(frozen=True)
class LexiconConfig:
    max_edit_distance: int = 2  # dictionary words this many edits from the read are candidates
    min_length: int = 3  # shorter reads have too many neighbours to correct safely
    margin: float = 2.0  # nats: how much less likely than the read a correction may be


@lru_cache(maxsize=2)
def english_dictionary(max_edit_distance: int = 2) -> SymSpell:
    """symspellpy's English dictionary, built once per process (about 2 s and 150 MB)."""
    speller = SymSpell(max_dictionary_edit_distance=max_edit_distance, prefix_length=7)
    path = importlib.resources.files("symspellpy") / DICTIONARY
    if not speller.load_dictionary(str(path), term_index=0, count_index=1):
        raise RuntimeError(f"symspellpy's {DICTIONARY} could not be read")
    return speller


def in_read_case(word: str, read: str) -> str:
    """Write a lower-case dictionary word the way the read is written (UPPER, Title, lower)."""
    letters = [c for c in read if c.isalpha()]
    if letters and sum(c.isupper() for c in letters) > len(letters) / 2:
        return word.upper()
    if read[:1].isupper():
        return word.capitalize()
    return word


def ctc_nll(log_probs: torch.Tensor, texts: list[str], charset: Charset) -> torch.Tensor:
    """CTC negative log-likelihood of each text under one crop's (T, C) log-probabilities."""
    encoded = [charset.encode(t) for t in texts]
    targets = torch.tensor([i for e in encoded for i in e], dtype=torch.long)
    steps = log_probs.shape[0]
    return F.ctc_loss(
        log_probs.float().unsqueeze(1).expand(steps, len(texts), -1).contiguous(),
        targets,
        torch.full((len(texts),), steps, dtype=torch.long),
        torch.tensor([len(e) for e in encoded], dtype=torch.long),
        blank=BLANK,
        reduction="none",
        zero_infinity=False,  # an impossible alignment is +inf: never chosen
    )


class Lexicon:
    """Corrects reads against the English dictionary; `correct(log_probs, read)` per crop."""

    def __init__(self, charset: Charset, config: LexiconConfig | None = None) -> None:
        self.charset = charset
        self.config = config or LexiconConfig()
        self.speller = english_dictionary(self.config.max_edit_distance)

    def candidates(self, read: str) -> list[str]:
        """Dictionary words near `read`, in its case; [] when the read needs no correction."""
        lower = read.lower()
        if len(read) < self.config.min_length or not read.isalpha() or not read.isascii():
            return []
        if lower in self.speller.words:
            return []  # already a word
        found = self.speller.lookup(lower, Verbosity.ALL, self.config.max_edit_distance)
        return [in_read_case(s.term, read) for s in found if self.charset.covers(s.term)]

    def is_word(self, text: str) -> bool:
        """Whether `text` (any case) is in the English dictionary."""
        return text.lower() in self.speller.words

    def correct(self, log_probs: torch.Tensor, read: str) -> str:
        """The read, or the dictionary word the network finds nearly as likely."""
        options = self.candidates(read)
        if not options:
            return read
        nll = ctc_nll(log_probs.cpu(), [read, *options], self.charset)
        best = int(torch.argmin(nll[1:])) + 1  # ties: the more frequent word (lookup order)
        return options[best - 1] if nll[best] <= nll[0] + self.config.margin else read
