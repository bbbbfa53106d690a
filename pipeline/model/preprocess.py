"""Image -> network input: resize by `input_scale` (keep aspect), but never so that the longest
side exceeds max_side; sides become multiples of 32. Normalise with CLIP's pixel statistics (the
backbone is CLIP's; the reference DBNet configs used other values — we decide explicitly and
store them in the checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

# Cap on the network input's longest side: bounds the cost of large frames (and of input_scale).
DEFAULT_MAX_SIDE = 1440
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True, eq=False)
class Prepared:
    tensor: torch.Tensor  # (3, H', W') float32 normalised
    scale_x: float  # original x = network x * scale_x
    scale_y: float


def network_size(
    height: int, width: int, max_side: int, input_scale: float = 1.0
) -> tuple[int, int]:
    scale = min(input_scale, max_side / max(height, width))
    new_h = max(32, round(height * scale / 32) * 32)
    new_w = max(32, round(width * scale / 32) * 32)
    return new_h, new_w


def normalise(rgb: np.ndarray, mean: tuple, std: tuple) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def prepare(
    rgb: np.ndarray,
    max_side: int,
    mean: tuple = CLIP_MEAN,
    std: tuple = CLIP_STD,
    input_scale: float = 1.0,
) -> Prepared:
    height, width = rgb.shape[:2]
    new_h, new_w = network_size(height, width, max_side, input_scale)
    resized = (
        rgb
        if (new_h, new_w) == (height, width)
        else cv2.resize(
            rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if new_w < width else cv2.INTER_LINEAR
        )
    )
    return Prepared(normalise(resized, mean, std), width / new_w, height / new_h)


def pad_batch(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Stack (3, H, W) tensors of different sizes by zero-padding bottom/right."""
    height = max(t.shape[1] for t in tensors)
    width = max(t.shape[2] for t in tensors)
    batch = torch.zeros(len(tensors), 3, height, width)
    for i, t in enumerate(tensors):
        batch[i, :, : t.shape[1], : t.shape[2]] = t
    return batch
