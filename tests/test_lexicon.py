"""Lexicon-aided reading: near-misses of English words are corrected only when the network agrees.

The dictionary is the real one inside symspellpy; the last test reads real IC15 validation words
with the shipped recognizer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shared_data import SHARED_DATA

from pipeline.eval.text_match import image_texts_match
from pipeline.model.charset import BLANK, Charset
from pipeline.model.lexicon import Lexicon, LexiconConfig, ctc_nll, in_read_case

CHARSET = Charset()


def log_probs_for(steps: list[dict[str, float]]) -> torch.Tensor:
    """(T, C) log-probabilities: each step spreads its mass over the given characters, with a
    blank step between characters (as a CTC network emits them)."""
    rows = []
    for step in steps:
        for chars in (step, {"": 1.0}):
            row = np.full(CHARSET.num_classes, 1e-6)
            for ch, p in chars.items():
                row[CHARSET.encode(ch)[0] if ch else BLANK] = p
            rows.append(row / row.sum())
    return torch.log(torch.tensor(np.array(rows), dtype=torch.float32))


def word_steps(word: str, at: int, options: dict[str, float]) -> list[dict[str, float]]:
    return [options if i == at else {ch: 1.0} for i, ch in enumerate(word)]


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon(CHARSET, LexiconConfig(margin=3.0))


def test_ctc_likelihood_ranks_the_read_above_other_words() -> None:
    lp = log_probs_for(word_steps("CAT", 2, {"T": 0.9, "R": 0.1}))
    nll = ctc_nll(lp, ["CAT", "CAR", "DOG"], CHARSET)
    assert nll[0] < 0.2 and nll[0] < nll[1] < nll[2]
    assert nll[1] - nll[0] == pytest.approx(np.log(9), abs=0.05)


def test_an_unsure_letter_is_corrected_to_the_word(lexicon: Lexicon) -> None:
    unsure = log_probs_for(word_steps("SINGAFORE", 5, {"F": 0.55, "P": 0.45}))
    assert lexicon.correct(unsure, "SINGAFORE") == "SINGAPORE"
    sure = log_probs_for(word_steps("SINGAFORE", 5, {"F": 0.999, "P": 0.001}))
    assert lexicon.correct(sure, "SINGAFORE") == "SINGAFORE"  # the network insists: kept


def test_words_codes_and_short_reads_are_left_alone(lexicon: Lexicon) -> None:
    assert lexicon.candidates("SALE") == []  # already a word
    assert lexicon.candidates("B2-A7") == [] and lexicon.candidates("L10") == []
    assert lexicon.candidates("OK") == []  # too short to correct safely
    assert "Weddings" in lexicon.candidates("Weddines")  # written in the read's case
    assert in_read_case("quality", "OUALITY") == "QUALITY"
    assert in_read_case("quality", "Oualiti") == "Quality"


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_the_lexicon_reads_more_ic15_validation_words_right() -> None:
    from pipeline.model.word_reader import OWN_READER, read_words
    from pipeline.spotter import Spotter
    from pipeline.train.word_data import rectified_word_samples

    torch.set_num_threads(1)
    reader = Spotter.load(lexicon=False, reader=OWN_READER).reader
    words = rectified_word_samples(SHARED_DATA / "ic15_train", "val", CHARSET, variants=1)
    crops = [w.image for w in words]
    plain = read_words(reader, crops)
    helped = read_words(reader, crops, Lexicon(reader.charset, LexiconConfig(margin=3.0)))

    def accuracy(reads: list) -> float:
        pairs = zip(words, reads, strict=True)
        return float(np.mean([image_texts_match(w.text, r.text) for w, r in pairs]))

    assert accuracy(helped) > accuracy(plain) + 0.02
    # Confidences are the network's; the dictionary only changes texts, and says so.
    assert [r.confidence for r in helped] == [r.confidence for r in plain]
    assert all(h.corrected == (h.text != p.text) for h, p in zip(helped, plain, strict=True))
    assert sum(h.in_dictionary for h in helped) > sum(h.corrected for h in helped) > 0
