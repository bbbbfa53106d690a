"""DBNet training targets from word polygons (pure numpy/OpenCV/pyclipper).

- shrink map: polygons shrunk by D = A (1 - r²) / L (r = 0.4), the "kernels" P learns;
- shrink mask: 0 over don't-care (###) words and words too small to shrink;
- threshold map: inside the band between the shrunk and the expanded polygon, 1 - distance to
  the border (normalised by D), mapped to [0.3, 0.7]; the mask marks that band.
"""

from __future__ import annotations

import cv2
import numpy as np
import pyclipper

SHRINK_RATIO = 0.4
THRESH_MIN, THRESH_MAX = 0.3, 0.7


def _offset(polygon: np.ndarray, distance: float) -> list[np.ndarray]:
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(
        np.round(polygon).astype(np.int64).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON
    )
    return [np.asarray(p, dtype=np.int32) for p in offset.Execute(distance)]


def shrink_distance(polygon: np.ndarray) -> float:
    area = abs(cv2.contourArea(polygon.astype(np.float32)))
    length = cv2.arcLength(polygon.astype(np.float32), True)
    return area * (1 - SHRINK_RATIO**2) / max(length, 1e-6)


def make_targets(
    height: int, width: int, polygons: list[np.ndarray], ignore: list[bool], min_side: float = 4.0
) -> dict[str, np.ndarray]:
    shrink = np.zeros((height, width), np.float32)
    shrink_mask = np.ones((height, width), np.float32)
    thresh = np.zeros((height, width), np.float32)
    thresh_mask = np.zeros((height, width), np.float32)
    for polygon, ignored in zip(polygons, ignore, strict=True):
        poly = polygon.astype(np.float32)
        rect_w, rect_h = cv2.minAreaRect(poly)[1]
        if ignored or min(rect_w, rect_h) < min_side:
            cv2.fillPoly(shrink_mask, [np.round(poly).astype(np.int32)], 0.0)
            continue
        distance = shrink_distance(poly)
        shrunk = _offset(poly, -distance)
        if not shrunk:
            cv2.fillPoly(shrink_mask, [np.round(poly).astype(np.int32)], 0.0)
            continue
        cv2.fillPoly(shrink, shrunk, 1.0)
        _draw_border(poly, distance, thresh, thresh_mask)
    thresh = thresh * (THRESH_MAX - THRESH_MIN) + THRESH_MIN
    return {
        "shrink": shrink,
        "shrink_mask": shrink_mask,
        "thresh": thresh,
        "thresh_mask": thresh_mask,
    }


def _draw_border(poly: np.ndarray, distance: float, thresh: np.ndarray, mask: np.ndarray) -> None:
    expanded = _offset(poly, distance)
    if not expanded:
        return
    band = expanded[0]
    cv2.fillPoly(mask, [band], 1.0)
    x0, y0 = np.maximum(band.min(axis=0), 0)
    x1 = min(band[:, 0].max(), thresh.shape[1] - 1)
    y1 = min(band[:, 1].max(), thresh.shape[0] - 1)
    if x1 <= x0 or y1 <= y0:
        return
    ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1].astype(np.float32)
    dist = np.full(xs.shape, np.inf, np.float32)
    for a, b in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        dist = np.minimum(dist, _segment_distance(xs, ys, a, b))
    value = 1 - np.clip(dist / max(distance, 1e-6), 0, 1)
    region = thresh[y0 : y1 + 1, x0 : x1 + 1]
    np.maximum(region, value, out=region)


def _segment_distance(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = ((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / max(float(ab @ ab), 1e-6)
    t = np.clip(t, 0, 1)
    return np.hypot(xs - (a[0] + t * ab[0]), ys - (a[1] + t * ab[1]))
