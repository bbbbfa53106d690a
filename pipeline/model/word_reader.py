"""The word reader: rectified word crops -> text, confidence and per-step CTC probabilities.

A reader is a component, chosen per process (`clipspot spot --reader NAME`). Every reader is a
CTC model whose output is brought onto ClipSpot's character set (`pipeline/model/charset.py`,
blank = 0), so the same greedy decoding, the same English-dictionary guard
(`pipeline/model/lexicon.py`) and the same per-reader calibration apply to all of them:

    reader = load_reader("ppocrv6", recognizer=None)
    readings = read_words(reader, crops, lexicon)     # list[Reading]

Readers, by name:
- `clipspot-ctc`: ClipSpot's own CTC recognizer (`recognizer.py`), trained here from scratch;
  its weights live in the ClipSpot weights file.
- `ppocrv6`: PP-OCRv6 rec small from the `rapidocr` 3.10.0 wheel (Apache-2.0), run by
  onnxruntime (`ppocr_reader.py`).

A reader implements `WordReader`: a `name`, a `charset`, an `identity` string (name, version and
a hash of its model file, so checksums and caches tell readers apart) and `step_log_probs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from pipeline.errors import ClipSpotError
from pipeline.model.charset import Charset, greedy_read
from pipeline.model.lexicon import Lexicon
from pipeline.model.recognizer import Recognizer

OWN_READER = "clipspot-ctc"
PPOCR_READER = "ppocrv6"
READER_NAMES = (OWN_READER, PPOCR_READER)


@dataclass(frozen=True, eq=False)
class Reading:
    """One crop's read. `confidence` is on the reader's own scale (mean max-probability of the
    emitted steps); calibration (`calibration.py`) turns it into a comparable word score."""

    text: str
    confidence: float
    corrected: bool = False  # the English dictionary replaced the network's greedy read
    in_dictionary: bool = False  # the final text is an English dictionary word


class WordReader(Protocol):
    name: str
    charset: Charset
    crop_height: int  # words are cut (`rectify_word`) this many pixels tall for this reader

    @property
    def identity(self) -> str:
        """Name, version and model-file hash: what a checksum or cache key must cover."""
        ...

    def step_log_probs(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        """RGB uint8 crops -> per crop a (T, charset.num_classes) float32 log-probability
        array (blank = 0), rows summing to 1 in probability."""
        ...


class OwnCTCReader:
    """ClipSpot's recognizer as a WordReader (its weights come with the weights file)."""

    name = OWN_READER

    def __init__(self, recognizer: Recognizer, weights_checksum: str) -> None:
        self.recognizer = recognizer.eval()
        self.charset = recognizer.charset
        self.crop_height = recognizer.config.height
        self.identity = f"{OWN_READER} (trained here; weights {weights_checksum})"

    @torch.inference_mode()
    def step_log_probs(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        if not crops:
            return []
        logits = self.recognizer(self.recognizer.preprocess(list(crops)))
        return list(logits.float().log_softmax(-1).cpu().numpy())


def check_reader_name(name: str | None) -> None:
    """None (the weights' default) or a known reader name; otherwise one ClipSpotError line."""
    if name is not None and name not in READER_NAMES:
        raise ClipSpotError(f"unknown reader {name!r}: choose one of {', '.join(READER_NAMES)}")


def load_reader(
    name: str, recognizer: Recognizer | None, weights_checksum: str, threads: int | None = None
) -> WordReader:
    """The reader called `name`; an unknown name or a missing model is one ClipSpotError line."""
    if name == OWN_READER:
        if recognizer is None:
            raise ClipSpotError(f"reader {OWN_READER!r}: these weights carry no recognizer")
        return OwnCTCReader(recognizer, weights_checksum)
    if name == PPOCR_READER:
        from pipeline.model.ppocr_reader import PPOCRv6Reader  # onnxruntime only when chosen

        return PPOCRv6Reader(threads=threads)
    check_reader_name(name)
    raise AssertionError(name)  # a name in READER_NAMES without a branch above


def read_words(
    reader: WordReader, crops: Sequence[np.ndarray], lexicon: Lexicon | None = None
) -> list[Reading]:
    """Greedy CTC reads of the crops, corrected against the dictionary when `lexicon` is set."""
    readings = []
    for log_probs in reader.step_log_probs(crops):
        text, confidence = greedy_read(np.exp(log_probs), reader.charset)
        corrected = text
        if lexicon is not None:
            corrected = lexicon.correct(torch.from_numpy(log_probs), text)
        in_dictionary = lexicon is not None and lexicon.is_word(corrected)
        readings.append(Reading(corrected, confidence, corrected != text, in_dictionary))
    return readings
