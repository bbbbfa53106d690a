"""Fit each reader's word-score calibration and cut on the tune split (`clipspot calibrate`).

    records = collect_words(spotter, readers, images, ground_truth)    # detect once, read N ways
    fitted = calibrate_reader(records[name])                           # -> ReaderCalibration

Detection is the expensive step and does not depend on the reader, so every tune image is
detected once and its words are read by every reader. Each spotted word that reads as something
(a letter or digit) becomes a record: its calibration features and whether it is an end-to-end
hit under the ICDAR 2015 rules. A logistic regression on the records is the calibration; the cut
is the calibrated score that maximises end-to-end hmean on the same images.

Only tune images may be passed here (IC15 `img_801`-`img_900`); validation is scored once,
afterwards, with `clipspot spot` + `clipspot eval`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.data.readers import GroundTruthWord
from pipeline.eval.image_protocol import match_image, pooled_metrics, prediction_outcomes
from pipeline.model.calibration import ReaderCalibration, fit_logistic, reliability, word_features
from pipeline.model.lexicon import Lexicon
from pipeline.model.rectify import rectify_word
from pipeline.model.word_reader import WordReader, read_words
from pipeline.types import TextInstance

CUTS = np.round(np.arange(0.0, 0.96, 0.025), 3)  # candidate cuts on the calibrated score


@dataclass
class ReaderRecords:
    """Everything one reader produced on the tune images, for fitting and sweeping."""

    features: list[np.ndarray] = field(default_factory=list)
    right: list[bool] = field(default_factory=list)
    image_of: list[str] = field(default_factory=list)  # which image each record belongs to
    words: list[TextInstance] = field(default_factory=list)  # score = raw detection score
    ground_truth: dict[str, Sequence[GroundTruthWord]] = field(default_factory=dict)


@dataclass(frozen=True)
class CalibrationResult:
    calibration: ReaderCalibration
    tune_metrics: dict  # detection / end_to_end at the chosen cut, on the tune images
    reliability: list[dict]  # predicted vs observed rate of right words per score bin


def collect_words(
    spotter: object,
    readers: Mapping[str, tuple[WordReader, Lexicon | None]],
    images: Iterable[tuple[str, np.ndarray]],
    ground_truth: Mapping[str, Sequence[GroundTruthWord]],
) -> dict[str, ReaderRecords]:
    """Detect each (name, RGB image) once with `spotter` and read its words with every reader."""
    records = {name: ReaderRecords() for name in readers}
    for image_name, image in images:
        (found,) = spotter.detect([image])  # type: ignore[attr-defined]
        for name, (reader, lexicon) in readers.items():
            crops = [rectify_word(image, d.polygon, height=reader.crop_height) for d in found]
            readings = read_words(reader, crops, lexicon)
            _add_image(records[name], image_name, found, readings, ground_truth[image_name])
    return records


def _add_image(records, image_name, found, readings, gt_words) -> None:  # type: ignore[no-untyped-def]
    records.ground_truth[image_name] = gt_words
    words, features = [], []
    for detection, reading in zip(found, readings, strict=True):
        if not any(c.isalnum() for c in reading.text):
            continue  # spot() never reports these, whatever the score
        words.append(TextInstance(detection.polygon, reading.text, detection.score))
        features.append(
            word_features(
                detection.score,
                reading.confidence,
                reading.in_dictionary,
                reading.corrected,
                len(reading.text),
            )
        )
    for word, row, outcome in zip(
        words, features, prediction_outcomes(gt_words, words), strict=True
    ):
        if outcome is None:
            continue  # inside a don't-care word: neither right nor wrong
        records.features.append(row)
        records.right.append(outcome)
        records.image_of.append(image_name)
        records.words.append(word)


def calibrate_reader(records: ReaderRecords, fitted_on: str) -> CalibrationResult:
    """Fit the calibration, then choose the cut with the best end-to-end hmean."""
    x, y = np.stack(records.features), np.asarray(records.right, dtype=float)
    coef = fit_logistic(x, y)
    probability = 1.0 / (1.0 + np.exp(-(x @ coef)))
    best_cut, best_metrics = 0.0, None
    for cut in CUTS:
        metrics = _metrics_at_cut(records, probability, cut)
        if (
            best_metrics is None
            or metrics["end_to_end"]["hmean"] > best_metrics["end_to_end"]["hmean"]
        ):
            best_cut, best_metrics = float(cut), metrics
    calibration = ReaderCalibration(tuple(float(c) for c in coef), best_cut, fitted_on)
    return CalibrationResult(calibration, best_metrics, reliability(probability, y))


def _metrics_at_cut(records: ReaderRecords, probability: np.ndarray, cut: float) -> dict:
    kept: dict[str, list[TextInstance]] = {name: [] for name in records.ground_truth}
    for word, image_name, p in zip(records.words, records.image_of, probability, strict=True):
        if p >= cut:
            kept[image_name].append(word)
    counts = [match_image(gt, kept[name]) for name, gt in records.ground_truth.items()]
    return pooled_metrics(counts)
