"""Detector training samples: IC15 training images (img_1..img_800, or an evenly spread few-shot
subset) plus optional synthetic scenes, augmented (scale, small rotation, colour), cropped to a
square biased towards text, with DBNet targets. Tune and validation images are never read here."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.data.readers import icdar_gt_path, read_icdar_gt
from pipeline.data.splits import ic15_images
from pipeline.model.preprocess import CLIP_MEAN, CLIP_STD, normalise
from pipeline.train.db_targets import make_targets


@dataclass(frozen=True)
class AugmentConfig:
    crop: int = 512
    scale_range: tuple[float, float] = (0.6, 1.8)
    max_rotation: float = 10.0  # degrees
    text_crop_prob: float = 0.9  # how often the crop is centred near a word


def _load_ic15(path: Path) -> tuple[np.ndarray, list[np.ndarray], list[bool]]:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{path}: unreadable image")
    words = read_icdar_gt(icdar_gt_path(path))
    return (
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
        [w.polygon for w in words],
        [w.dont_care for w in words],
    )


def _rotate_scale(image, polygons, scale, angle):
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(h * sin + w * cos), int(h * cos + w * sin)
    matrix[0, 2] += new_w / 2 - w / 2
    matrix[1, 2] += new_h / 2 - h / 2
    out = cv2.warpAffine(image, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR)
    moved = [cv2.transform(p[None].astype(np.float32), matrix)[0] for p in polygons]
    return out, moved


def _crop(image, polygons, ignore, size, rng, text_prob):
    h, w = image.shape[:2]
    pad_h, pad_w = max(size - h, 0), max(size - w, 0)
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
        h, w = image.shape[:2]
    cared = [p for p, ig in zip(polygons, ignore, strict=True) if not ig]
    if cared and rng.random() < text_prob:
        cx, cy = cared[rng.randrange(len(cared))].mean(axis=0)
        x0 = int(np.clip(cx - rng.uniform(0.2, 0.8) * size, 0, w - size))
        y0 = int(np.clip(cy - rng.uniform(0.2, 0.8) * size, 0, h - size))
    else:
        x0, y0 = rng.randint(0, w - size), rng.randint(0, h - size)
    crop = image[y0 : y0 + size, x0 : x0 + size]
    shifted = [p - np.array([x0, y0], np.float32) for p in polygons]
    return crop, shifted


def _colour_jitter(image: np.ndarray, rng: random.Random) -> np.ndarray:
    out = image.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)
    if rng.random() < 0.2:
        out = cv2.GaussianBlur(out, (3, 3), 0)
    return np.clip(out, 0, 255).astype(np.uint8)


def few_shot_subset(images: list[Path], count: int) -> list[Path]:
    """`count` images spread evenly over the list (every 10th for 10 %): the same subset for
    every arm and seed of an ablation, so seeds vary the training, not the data."""
    if not 0 < count <= len(images):
        raise ValueError(f"train_images must be 1..{len(images)}, not {count}")
    return [images[i * len(images) // count] for i in range(count)]


class DetectionDataset(Dataset):
    def __init__(
        self,
        ic15_root: str | Path | None,
        augment: AugmentConfig,
        synth_fraction: float = 0.0,
        seed: int = 0,
        length: int = 10**9,
        train_images: int | None = None,
    ) -> None:
        self.images = ic15_images(ic15_root, "train") if ic15_root else []
        if train_images is not None:
            self.images = few_shot_subset(self.images, train_images)
        self.augment = augment
        self.synth_fraction = synth_fraction if self.images else 1.0
        self.seed = seed
        self.length = length

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> tuple[np.ndarray, list[np.ndarray], list[bool]]:
        rng = random.Random(self.seed * 1_000_003 + index)
        if rng.random() < self.synth_fraction:
            from pipeline.data.synth_images import make_scene  # synthetic scenes are optional

            image, words = make_scene(np.random.default_rng(rng.randrange(2**32)), 960, 640)
            return image, [w.polygon for w in words], [w.dont_care for w in words]
        return _load_ic15(self.images[rng.randrange(len(self.images))])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = random.Random(self.seed * 7_919 + index)
        image, polygons, ignore = self.sample(index)
        cfg = self.augment
        image, polygons = _rotate_scale(
            image,
            polygons,
            rng.uniform(*cfg.scale_range),
            rng.uniform(-cfg.max_rotation, cfg.max_rotation),
        )
        image, polygons = _crop(image, polygons, ignore, cfg.crop, rng, cfg.text_crop_prob)
        image = _colour_jitter(image, rng)
        targets = make_targets(cfg.crop, cfg.crop, polygons, ignore)
        sample = {k: torch.from_numpy(v)[None] for k, v in targets.items()}
        sample["image"] = normalise(image, CLIP_MEAN, CLIP_STD)
        return sample
