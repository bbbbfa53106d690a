"""Detection inference: RGB images -> word quads in original pixels (no recognition)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pipeline.model.detector import FastTCMDetector
from pipeline.model.postprocess import Detection, PostprocessConfig, polygons_from_prob
from pipeline.model.preprocess import CLIP_MEAN, CLIP_STD, DEFAULT_MAX_SIDE, pad_batch, prepare


@torch.inference_mode()
def detect_words(
    model: FastTCMDetector,
    images: Sequence[np.ndarray],
    text_embedding: torch.Tensor | None,
    max_side: int = DEFAULT_MAX_SIDE,
    postprocess: PostprocessConfig | None = None,
    mean: tuple = CLIP_MEAN,
    std: tuple = CLIP_STD,
) -> list[list[Detection]]:
    if not images:
        return []
    postprocess = postprocess or PostprocessConfig()
    device = next(model.parameters()).device
    prepared = [prepare(image, max_side, mean, std, postprocess.input_scale) for image in images]
    batch = pad_batch([p.tensor for p in prepared]).to(device)
    batch = batch.contiguous(memory_format=torch.channels_last)  # the Spotter's model layout
    if text_embedding is not None:
        text_embedding = text_embedding.to(device=device, dtype=batch.dtype)
    prob = model(batch, text_embedding).head.prob[:, 0].float().cpu().numpy()
    results = []
    for p, image_prob in zip(prepared, prob, strict=True):
        valid = image_prob[: p.tensor.shape[1], : p.tensor.shape[2]]  # drop batch padding
        results.append(polygons_from_prob(valid, p.scale_x, p.scale_y, postprocess))
    return results
