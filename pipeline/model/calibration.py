"""Word scores that mean the same for every reader: P(word is right), by logistic regression.

Readers report confidence on their own scales (ClipSpot's CTC reader is rarely sure, PP-OCRv6
nearly always is), so one cut on a raw score would keep very different words per reader. Each
reader gets a calibration fitted on the tune split (IC15 `img_801`-`img_900`, never on
validation): a logistic regression from what is known about a spotted word to whether it is
right (matched to a ground-truth word with IoU > 0.5 and read correctly; a false detection
counts as wrong). Its output is the `score` users see, so 0.8 means "about 8 in 10 words scored
like this were right" whichever reader produced it.

Features (`word_features`): the detection score and the read confidence as logits, whether the
final text is an English dictionary word, whether the dictionary corrected it, and the log of
its length. The calibration and the per-reader cut are stored in the weights file
(`clipspot calibrate`) and travel with it.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

FEATURES = (
    "bias",
    "detection_logit",
    "confidence_logit",
    "in_dictionary",
    "corrected",
    "log_length",
)


@dataclass(frozen=True)
class ReaderCalibration:
    """One reader's calibration and operating point, as stored in a weights file."""

    coef: tuple[float, ...]  # one per FEATURES entry
    min_word_score: float  # words scored below this are dropped (chosen on the tune split)
    fitted_on: str = ""  # what it was fitted on, for the model card

    def probability(self, features: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(features @ np.asarray(self.coef))))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ReaderCalibration:
        coef = tuple(float(c) for c in data["coef"])
        if len(coef) != len(FEATURES):
            raise ValueError(f"calibration has {len(coef)} coefficients, expected {len(FEATURES)}")
        return cls(coef, float(data["min_word_score"]), str(data.get("fitted_on", "")))


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


def word_features(
    detection: float, confidence: float, in_dictionary: bool, corrected: bool, length: int
) -> np.ndarray:
    """The feature row of one spotted word (order: FEATURES)."""
    return np.array(
        [
            1.0,
            _logit(detection),
            _logit(confidence),
            float(in_dictionary),
            float(corrected),
            float(np.log1p(length)),
        ]
    )


def fit_logistic(features: np.ndarray, right: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """Coefficients of P(right | features) by Newton's method with a small L2 penalty
    (the bias is not penalised). `features` (N, F), `right` (N,) of 0/1."""
    x, y = np.asarray(features, float), np.asarray(right, float)
    coef = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(x @ coef)))
        gradient = x.T @ (p - y) + penalty * coef
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        coef -= step
        if np.abs(step).max() < 1e-8:
            break
    return coef


def reliability(probabilities: np.ndarray, right: np.ndarray, bins: int = 5) -> list[dict]:
    """Mean predicted vs observed rate of right words per probability bin (for the model card)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for low, high in itertools.pairwise(edges):
        inside = (probabilities >= low) & ((probabilities < high) | (high == 1.0))
        if inside.any():
            rows.append(
                {
                    "bin": f"{low:.1f}-{high:.1f}",
                    "words": int(inside.sum()),
                    "predicted": float(probabilities[inside].mean()),
                    "observed": float(np.mean(right[inside])),
                }
            )
    return rows
