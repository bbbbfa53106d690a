"""ICDAR2015 Challenge 4 on still images: detection and end-to-end precision/recall/hmean.

The rules of the RRC script (`script.py` of Challenge 4, tasks 1 and 4):
- ground truth `###` words are don't-care: never matched, never counted as missed;
- a detection with more than half of its area inside one don't-care word is ignored
  (neither right nor wrong);
- matching is one-to-one and greedy in file order: ground-truth word i takes the first still
  unmatched detection with IoU > 0.5 (strictly);
- end-to-end uses the same geometric matches; a match counts when the transcriptions are equal
  under `text_match.image_texts_match` (a geometric match with the wrong text still uses up both,
  as in the RRC script);
- counts are taken per image and pooled over all images, as the RRC script reports its method
  numbers: recall = matched / care GT, precision = matched / care detections (0 when a
  denominator is 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.data.readers import GroundTruthWord
from pipeline.eval.polygons import iou_matrix, outside_dont_care, to_shape
from pipeline.eval.text_match import image_texts_match
from pipeline.types import TextInstance

IOU_THRESHOLD = 0.5  # a match needs IoU strictly above this
DONT_CARE_AREA = 0.5  # a detection more than this much inside a ### word is ignored


@dataclass(frozen=True)
class ImageCounts:
    """What one image contributes to the pooled totals."""

    gt_care: int  # ground-truth words that are not ###
    det_care: int  # detections not ignored by the don't-care rule
    matched: int  # one-to-one geometric matches (IoU > 0.5)
    matched_text: int  # of those, matches whose transcription is also right


def geometric_matches(
    gt_words: Sequence[GroundTruthWord], predictions: Sequence[TextInstance]
) -> tuple[list[bool], dict[int, int]]:
    """The RRC matching: which detections count (not inside a ### word), and the one-to-one
    matches as {prediction index: ground-truth index}."""
    gt_shapes = [to_shape(w.polygon) for w in gt_words]
    det_shapes = [to_shape(p.polygon) for p in predictions]
    dont_care = [s for s, w in zip(gt_shapes, gt_words, strict=True) if w.dont_care]
    det_is_care = outside_dont_care(det_shapes, dont_care, DONT_CARE_AREA)
    ious = iou_matrix(gt_shapes, det_shapes)
    matches: dict[int, int] = {}
    for g, word in enumerate(gt_words):
        if word.dont_care:
            continue
        for d in range(len(predictions)):
            if d in matches or not det_is_care[d] or ious[g, d] <= IOU_THRESHOLD:
                continue
            matches[d] = g
            break
    return list(det_is_care), matches


def match_image(
    gt_words: Sequence[GroundTruthWord], predictions: Sequence[TextInstance]
) -> ImageCounts:
    """Score one image's predictions against its ground-truth words."""
    det_is_care, matches = geometric_matches(gt_words, predictions)
    return ImageCounts(
        gt_care=sum(not w.dont_care for w in gt_words),
        det_care=sum(det_is_care),
        matched=len(matches),
        matched_text=sum(
            image_texts_match(gt_words[g].text, predictions[d].text) for d, g in matches.items()
        ),
    )


def prediction_outcomes(
    gt_words: Sequence[GroundTruthWord], predictions: Sequence[TextInstance]
) -> list[bool | None]:
    """Per prediction: True when it is an end-to-end hit (matched and read right), False when
    it is not, None when the don't-care rule ignores it (what calibration learns from)."""
    det_is_care, matches = geometric_matches(gt_words, predictions)
    outcomes: list[bool | None] = []
    for d, prediction in enumerate(predictions):
        if not det_is_care[d]:
            outcomes.append(None)
        else:
            g = matches.get(d)
            outcomes.append(g is not None and image_texts_match(gt_words[g].text, prediction.text))
    return outcomes


def precision_recall_hmean(matched: int, gt: int, det: int) -> dict[str, float]:
    """Pooled P/R/H as the RRC script computes them (0 when a denominator is 0)."""
    recall = matched / gt if gt else 0.0
    precision = matched / det if det else 0.0
    total = precision + recall
    hmean = 2 * precision * recall / total if total else 0.0
    return {"precision": precision, "recall": recall, "hmean": hmean}


def pooled_metrics(counts: Iterable[ImageCounts]) -> dict[str, Any]:
    """Sum per-image counts into the detection and end-to-end results."""
    counts = list(counts)
    gt = sum(c.gt_care for c in counts)
    det = sum(c.det_care for c in counts)
    matched = sum(c.matched for c in counts)
    matched_text = sum(c.matched_text for c in counts)
    totals = {"gt_care": gt, "det_care": det}
    return {
        "images": len(counts),
        "detection": {**precision_recall_hmean(matched, gt, det), "matched": matched, **totals},
        "end_to_end": {
            **precision_recall_hmean(matched_text, gt, det),
            "matched": matched_text,
            **totals,
        },
    }


def evaluate_images(
    ground_truth: Mapping[str, Sequence[GroundTruthWord]],
    predictions: Mapping[str, Sequence[TextInstance]],
) -> dict[str, Any]:
    """Score every ground-truth image (keyed by name); an image with no predictions entry
    counts all its care words as missed. Predictions for unknown names are the caller's
    business (the CLI rejects them)."""
    counts = [match_image(words, predictions.get(name, ())) for name, words in ground_truth.items()]
    return {"protocol": "icdar2015", **pooled_metrics(counts)}
