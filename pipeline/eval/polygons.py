"""Polygon overlap for scoring: IoU and intersection over detection area (shapely).

Predictions can be degenerate: a quad whose points cross (a "bow tie"), repeated points, or zero
area. Rules, applied the same way to ground truth and predictions:
- fewer than 3 distinct points, or zero area -> the polygon overlaps nothing (IoU 0), like the
  RRC scripts, which return 0 for an empty polygon;
- a self-intersecting polygon is replaced by its convex hull, which is what the RRC video script
  does for every polygon (`Polygon.Utils.convexHull`); valid polygons are used as given, like the
  RRC image script.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

EMPTY = Polygon()


def to_shape(points: np.ndarray | Sequence[Sequence[float]]) -> BaseGeometry:
    """(N, 2) points -> a valid shapely polygon with positive area, or EMPTY."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3 or not np.isfinite(pts).all():
        return EMPTY
    shape = Polygon(pts)
    if not shape.is_valid:
        shape = shape.convex_hull
    if shape.geom_type != "Polygon" or shape.area <= 0:
        return EMPTY
    return shape


def intersection_area(a: BaseGeometry, b: BaseGeometry) -> float:
    if a.is_empty or b.is_empty:
        return 0.0
    return float(a.intersection(b).area)


def iou(a: BaseGeometry, b: BaseGeometry) -> float:
    """Intersection over union; 0 when either polygon is empty."""
    inter = intersection_area(a, b)
    union = a.area + b.area - inter
    return 0.0 if union <= 0 else inter / union


def intersection_over_detection(det: BaseGeometry, region: BaseGeometry) -> float:
    """Share of the detection's area inside `region` (the don't-care test); 0 for empty det."""
    return 0.0 if det.area <= 0 else intersection_area(det, region) / det.area


def iou_matrix(gts: Sequence[BaseGeometry], dets: Sequence[BaseGeometry]) -> np.ndarray:
    """(len(gts), len(dets)) IoU matrix; bounding boxes are checked first because most pairs
    in a frame are far apart."""
    out = np.zeros((len(gts), len(dets)), dtype=np.float64)
    for i, g in enumerate(gts):
        if g.is_empty:
            continue
        gx0, gy0, gx1, gy1 = g.bounds
        for j, d in enumerate(dets):
            if d.is_empty:
                continue
            dx0, dy0, dx1, dy1 = d.bounds
            if dx0 > gx1 or dx1 < gx0 or dy0 > gy1 or dy1 < gy0:
                continue
            out[i, j] = iou(g, d)
    return out


def outside_dont_care(
    dets: Sequence[BaseGeometry], dont_care: Sequence[BaseGeometry], limit: float = 0.5
) -> list[bool]:
    """For each detection: False when more than `limit` of its area lies inside any one
    don't-care region (the RRC rule: such detections are neither right nor wrong)."""
    return [
        not any(intersection_over_detection(d, region) > limit for region in dont_care)
        for d in dets
    ]
