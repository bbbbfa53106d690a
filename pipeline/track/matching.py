"""Association scores between tracks and new detections: polygon IoU, text similarity, and the
one-to-one assignment that maximises them (Hungarian, scipy's linear_sum_assignment)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from scipy.optimize import linear_sum_assignment


def _as_polygons(polygons: Sequence[np.ndarray]) -> np.ndarray:
    shapes = []
    for points in polygons:
        shape = shapely.Polygon(np.asarray(points, dtype=np.float64).reshape(-1, 2))
        # Recognised quads can self-intersect (a twisted corner order); buffer(0) repairs them
        # so the intersection area is defined instead of raising.
        shapes.append(shape if shape.is_valid else shape.buffer(0))
    return np.array(shapes, dtype=object)


def _boxes(polygons: Sequence[np.ndarray]) -> np.ndarray:
    return np.array(
        [[*np.min(p, axis=0), *np.max(p, axis=0)] for p in polygons], dtype=np.float64
    ).reshape(-1, 4)


def polygon_iou(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of polygons given as (N, 2) point arrays."""
    iou = np.zeros((len(a), len(b)), dtype=np.float64)
    if not len(a) or not len(b):
        return iou
    box_a, box_b = _boxes(a), _boxes(b)
    # Only pairs whose bounding boxes overlap can intersect: skip the exact geometry for the rest.
    overlap = (
        (box_a[:, None, 0] < box_b[None, :, 2])
        & (box_b[None, :, 0] < box_a[:, None, 2])
        & (box_a[:, None, 1] < box_b[None, :, 3])
        & (box_b[None, :, 1] < box_a[:, None, 3])
    )
    rows, cols = np.nonzero(overlap)
    if not rows.size:
        return iou
    shapes_a, shapes_b = _as_polygons(a), _as_polygons(b)
    inter = shapely.area(shapely.intersection(shapes_a[rows], shapes_b[cols]))
    union = shapely.area(shapes_a[rows]) + shapely.area(shapes_b[cols]) - inter
    iou[rows, cols] = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
    return iou


def normalize_text(text: str) -> str:
    """Case-insensitive alphanumerics: what text comparison (and the ICDAR rules) care about."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def text_similarity(a: str, b: str) -> float | None:
    """1 - normalized edit distance of the normalized texts, in [0, 1]; None if either is empty
    (an unread word says nothing about identity, so it must not count against a match)."""
    a, b = normalize_text(a), normalize_text(b)
    if not a or not b:
        return None
    return 1.0 - edit_distance(a, b) / max(len(a), len(b))


def affinity_matrix(
    iou: np.ndarray,
    track_texts: Sequence[str],
    detection_texts: Sequence[str],
    text_weight: float,
) -> np.ndarray:
    """(1 - w) * IoU + w * text similarity; where a text is missing, IoU stands in for it."""
    affinity = iou.copy()
    for i, track_text in enumerate(track_texts):
        for j, detection_text in enumerate(detection_texts):
            if iou[i, j] <= 0.0:
                continue
            similarity = text_similarity(track_text, detection_text)
            if similarity is not None:
                affinity[i, j] = (1.0 - text_weight) * iou[i, j] + text_weight * similarity
    return affinity


def assign(affinity: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one (row, col) pairs maximising total affinity among allowed pairs."""
    if not affinity.size or not allowed.any():
        return []
    # Disallowed pairs get a cost no allowed assignment can beat, then are filtered out.
    cost = np.where(allowed, -affinity, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]
