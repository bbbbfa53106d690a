"""Cut a word out of a frame as a horizontal crop the recognizer can read.

A detected or annotated word is a quad (ICDAR: clockwise from the top-left) or a longer
polygon (DB's unclipped contour), which is reduced to its minimum-area rectangle. The quad is
perspective-warped onto an upright rectangle whose size follows the quad's side lengths, so
the text keeps its aspect ratio.

Which corner is "top-left" is decided from geometry, not from the point order, because DB
polygons carry no reading direction: the edge whose direction is closest to +x becomes the
top edge. Text is then assumed to read left to right, which holds for nearly all horizontal
and tilted words. A result much taller than wide (`vertical_ratio`) is taken to be a rotated
word reading top to bottom (as on signs and spines) and is turned 90 degrees
counter-clockwise; single tall glyphs ("I", "1") are narrower than that ratio only rarely.
"""

from __future__ import annotations

import cv2
import numpy as np


def _quad(polygon: np.ndarray) -> np.ndarray:
    """(N, 2) polygon -> clockwise (4, 2) float32 quad (image coordinates, y down)."""
    points = np.asarray(polygon, dtype=np.float32).reshape(-1, 2)
    if len(points) < 3:
        raise ValueError(f"a word polygon needs at least 3 points, got {len(points)}")
    if len(points) != 4:
        points = cv2.boxPoints(cv2.minAreaRect(points)).astype(np.float32)
    x, y = points[:, 0], points[:, 1]
    signed_area = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
    # With y pointing down, a clockwise (on screen) polygon has a positive shoelace area.
    return points if signed_area >= 0 else points[::-1].copy()


def _start_at_top_left(quad: np.ndarray) -> np.ndarray:
    """Rotate the corner order so that edge 0->1 points most nearly along +x."""
    edges = np.roll(quad, -1, axis=0) - quad
    cosines = edges[:, 0] / np.maximum(np.linalg.norm(edges, axis=1), 1e-6)
    return np.roll(quad, -int(np.argmax(cosines)), axis=0)


def rectify_word(
    image: np.ndarray, polygon: np.ndarray, height: int = 32, vertical_ratio: float = 2.0
) -> np.ndarray:
    """Warp the word inside `polygon` of `image` (H, W, 3) to an upright crop `height` tall.

    Returns an array of the image's dtype, shape (height, width, C) with width >= 1.
    """
    quad = _start_at_top_left(_quad(polygon))
    width_px = 0.5 * (np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[3]))
    height_px = 0.5 * (np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1]))
    out_w, out_h = max(1, round(width_px)), max(1, round(height_px))
    target = np.float32([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]])
    matrix = cv2.getPerspectiveTransform(quad, target)
    # Warp at the word's own resolution, then shrink with area averaging: a direct warp to
    # 32 px would alias the strokes of large words.
    crop = cv2.warpPerspective(
        image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    if out_h >= vertical_ratio * out_w and out_h > 4:
        crop = np.ascontiguousarray(np.rot90(crop, k=1))
    h, w = crop.shape[:2]
    new_w = max(1, round(w * height / h))
    interpolation = cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
    return cv2.resize(crop, (new_w, height), interpolation=interpolation)
