"""Probability map -> word polygons (DBNet post-processing, pure numpy/OpenCV/pyclipper).

Binarize P, take each connected contour, score it by the mean probability inside, fit a
rotated rectangle, grow it back by the shrink the training targets applied (unclip), and map to
the original image's coordinates. Output quads are clockwise starting top-left.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pyclipper


@dataclass(frozen=True)
class PostprocessConfig:
    binary_threshold: float = 0.3
    box_threshold: float = 0.5  # minimum mean probability inside a word
    unclip_ratio: float = 1.6
    min_side: float = 3.0  # pixels (in the network's input); smaller blobs are noise
    max_words: int = 300
    # Applied by Spotter after recognition: words whose combined score sqrt(det * rec) is lower,
    # or whose reading has no letter or digit, are dropped (an operating point, tuned on train).
    min_word_score: float = 0.0
    # Resize factor applied to the image before the network (then capped by max_side). Small
    # words are found far more often on an enlarged image, so this is tuned with the thresholds.
    input_scale: float = 1.0
    # Applied by Spotter: correct reads to English words within this many nats of CTC
    # likelihood (pipeline/model/lexicon.py); None reads without a dictionary.
    lexicon_margin: float | None = None


@dataclass(frozen=True, eq=False)
class Detection:
    polygon: np.ndarray  # (4, 2) float32, original image pixels, clockwise
    score: float


def unclip(polygon: np.ndarray, ratio: float) -> np.ndarray | None:
    """Grow a polygon by D = A * ratio / L (the inverse of the DB shrink)."""
    area = cv2.contourArea(polygon.astype(np.float32))
    length = cv2.arcLength(polygon.astype(np.float32), True)
    if length < 1e-6:
        return None
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(
        polygon.astype(np.int64).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON
    )
    grown = offset.Execute(area * ratio / length)
    return np.asarray(grown[0], dtype=np.float32) if grown else None


def clockwise_quad(points: np.ndarray) -> np.ndarray:
    """Order 4 points clockwise (in image coords, y down) starting from the top-left one."""
    center = points.mean(axis=0)
    angles = np.arctan2(points[:, 1] - center[1], points[:, 0] - center[0])
    ordered = points[np.argsort(angles)]  # increasing angle = clockwise when y points down
    start = np.argmin(ordered.sum(axis=1))
    return np.roll(ordered, -start, axis=0).astype(np.float32)


def polygons_from_prob(
    prob: np.ndarray, scale_x: float, scale_y: float, config: PostprocessConfig
) -> list[Detection]:
    """prob (H, W) float in [0, 1] -> detections; scale maps network pixels to original ones."""
    bitmap = (prob > config.binary_threshold).astype(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    detections = []
    for contour in contours[: config.max_words * 4]:
        if len(contour) < 3:
            continue
        score = _mean_inside(prob, contour)
        if score < config.box_threshold:
            continue
        (cx, cy), (w, h), angle = cv2.minAreaRect(contour)
        if min(w, h) < config.min_side / 2:
            continue
        grown = unclip(cv2.boxPoints(((cx, cy), (w, h), angle)), config.unclip_ratio)
        if grown is None:
            continue
        rect = cv2.minAreaRect(grown)
        if min(rect[1]) < config.min_side:
            continue
        quad = cv2.boxPoints(rect) * np.array([scale_x, scale_y], dtype=np.float32)
        detections.append(Detection(clockwise_quad(quad), score))
    detections.sort(key=lambda d: -d.score)
    return detections[: config.max_words]


def _mean_inside(prob: np.ndarray, contour: np.ndarray) -> float:
    x, y, w, h = cv2.boundingRect(contour)
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(mask, [contour.reshape(-1, 2) - [x, y]], 1)
    return float(cv2.mean(prob[y : y + h, x : x + w], mask)[0])
