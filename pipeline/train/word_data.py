"""Word-crop training data: real IC15/IIIT5K crops held in memory, augmented on the fly,
mixed with synthetic crops from `pipeline.data.synth_images.render_word_crop` when present.

Crops are decoded once and stored at a fixed working height (`STORE_HEIGHT`, a little above the
model's 32) so that augmentation (perspective, rotation, margins) works on a sharper image and
decoding never repeats. Everything runs in the training process: on 2 shared cores a worker
pool would only compete with the model for the same CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.readers import WordCrop, icdar_gt_path, read_icdar_gt
from pipeline.data.splits import ic15_images, ic15_words, iiit5k_words
from pipeline.errors import ClipSpotError
from pipeline.model.charset import Charset
from pipeline.model.recognizer import fit_crop
from pipeline.model.rectify import rectify_word

STORE_HEIGHT = 48
MAX_STORE_ASPECT = 8.0


@dataclass(frozen=True)
class WordSample:
    image: np.ndarray  # RGB uint8, height STORE_HEIGHT
    text: str


def load_crop(path: Path, height: int = STORE_HEIGHT) -> np.ndarray:
    """Read an image file as RGB uint8 resized to `height` keeping aspect (capped width)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ClipSpotError(f"{path}: cannot read image")
    h, w = bgr.shape[:2]
    width = int(np.clip(round(w * height / h), 4, height * MAX_STORE_ASPECT))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def load_samples(crops: list[WordCrop], charset: Charset) -> list[WordSample]:
    """Decode crops whose label the charset can write completely (others cannot be learned)."""
    return [
        WordSample(load_crop(c.path), c.text) for c in crops if c.text and charset.covers(c.text)
    ]


def real_word_sets(
    ic15_root: str | Path | None, iiit5k_root: str | Path | None, split: str, charset: Charset
) -> dict[str, list[WordSample]]:
    """{"ic15": [...], "iiit5k": [...]} for split 'train' or 'val' (roots may be None)."""
    sets = {}
    if ic15_root:
        sets["ic15"] = load_samples(ic15_words(ic15_root, split), charset)
    if iiit5k_root:
        sets["iiit5k"] = load_samples(iiit5k_words(iiit5k_root, split), charset)
    return sets


def detector_like_quads(
    quad: np.ndarray, rng: np.random.Generator, variants: int
) -> list[np.ndarray]:
    """The annotated quad plus `variants - 1` boxes as the detector would return them.

    At spotting time the recognizer reads the minimum-area rectangle of DB's unclipped contour,
    which is a little looser or tighter than the annotation and never a perspective quad, so
    training crops cut the same way teach it the crops it will really see.
    """
    quads = [quad]
    height = max(float(min(cv2.minAreaRect(quad)[1])), 1.0)  # the text height, in pixels
    centre = quad.mean(0)
    for _ in range(variants - 1):
        scale = rng.uniform(0.95, 1.25)
        jittered = (quad - centre) * scale + centre + rng.normal(0, 0.06 * height, (4, 2))
        quads.append(cv2.boxPoints(cv2.minAreaRect(jittered.astype(np.float32))))
    return quads


def rectified_word_samples(
    ic15_root: str | Path, split: str, charset: Charset, variants: int = 3, seed: int = 0
) -> list[WordSample]:
    """Legible words of the IC15 scene images cut out of the image along their polygons.

    The IC15 word crops are axis-aligned cuts of the 1280x720 originals; spotting reads
    rectified cuts of a 960x640 frame. These samples are the latter, from the same split's
    images (`variants` cuts per word: the annotation and detector-like boxes).
    """
    rng = np.random.default_rng(seed)
    samples = []
    for path in ic15_images(ic15_root, split):
        words = [w for w in read_icdar_gt(icdar_gt_path(path)) if not w.dont_care]
        words = [w for w in words if w.text and charset.covers(w.text)]
        if not words:
            continue
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        for word in words:
            for quad in detector_like_quads(word.polygon.astype(np.float32), rng, variants):
                crop = rectify_word(rgb, quad, height=STORE_HEIGHT)
                samples.append(to_sample(crop, word.text))
    return samples


def _random_string(rng: np.random.Generator, charset: Charset) -> str:
    """Characters drawn uniformly from the charset: teaches the rare symbols and digits."""
    pool = charset.chars.replace(" ", "")
    return "".join(rng.choice(list(pool), int(rng.integers(1, 11))))


def synth_renderer(
    fonts_dir: str | Path, backgrounds_dir: str | Path | None, lexicon: list[str], charset: Charset
) -> SynthFn:
    """A function rng -> (RGB crop, label) rendering synthetic words with the given fonts.

    Texts: the renderer's own street vocabulary, numbers, prices and codes (40%), the real
    training labels (35%, so the word distribution resembles the real one), random strings
    (25%, so every character is seen in every font).
    """
    from pipeline.data.synth_images import load_backgrounds, render_word_crop
    from pipeline.data.synth_text import find_fonts

    fonts, backgrounds = find_fonts(fonts_dir), load_backgrounds(backgrounds_dir)

    def render(rng: np.random.Generator) -> tuple[np.ndarray, str]:
        r = rng.random()
        text = (
            None
            if r < 0.4 or not lexicon
            else lexicon[rng.integers(len(lexicon))]
            if r < 0.75
            else _random_string(rng, charset)
        )
        return render_word_crop(rng, text=text, fonts=fonts, backgrounds=backgrounds)

    return render


def to_sample(image: np.ndarray, text: str) -> WordSample:
    """Store an RGB crop at the working height like the real crops."""
    h, w = image.shape[:2]
    width = int(np.clip(round(w * STORE_HEIGHT / max(h, 1)), 4, STORE_HEIGHT * MAX_STORE_ASPECT))
    return WordSample(cv2.resize(image, (width, STORE_HEIGHT), interpolation=cv2.INTER_AREA), text)


def save_word_shard(path: str | Path, samples: list[WordSample]) -> None:
    """Write samples as one .npz (images side by side, their widths, labels): no pickle."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        images=np.concatenate([s.image for s in samples], axis=1),
        widths=np.array([s.image.shape[1] for s in samples]),
        texts=np.array([s.text for s in samples], dtype=str),
    )
    tmp.replace(path)  # readers never see a half-written shard


def load_word_shard(path: str | Path) -> list[WordSample]:
    with np.load(path, allow_pickle=False) as data:
        images, widths, texts = data["images"], data["widths"], data["texts"]
    edges = np.concatenate([[0], np.cumsum(widths)])
    return [
        WordSample(images[:, a:b], str(t))
        for a, b, t in zip(edges[:-1], edges[1:], texts, strict=True)
    ]


@dataclass(frozen=True)
class AugmentConfig:
    max_rotation: float = 4.0  # degrees
    max_perspective: float = 0.08  # corner jitter, fraction of the crop height
    max_margin: float = 0.15  # extra (or removed, if negative) margin, fraction of height
    blur_prob: float = 0.25
    jitter_prob: float = 0.8
    invert_prob: float = 0.1
    gray_prob: float = 0.1
    noise_prob: float = 0.2
    downscale_prob: float = 0.25  # blur by shrinking: far-away text is low resolution


def _warp(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Random small perspective + rotation + margin change in one warp."""
    h, w = img.shape[:2]
    m = rng.uniform(-0.5, 1.0) * cfg.max_margin * h  # more often extra margin than a cut
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + rng.uniform(-cfg.max_perspective, cfg.max_perspective, (4, 2)) * h
    dst += np.float32([[-m, -m], [m, -m], [m, m], [-m, m]])
    angle = np.deg2rad(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
    centre = dst.mean(0)
    rot = np.float32([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = (dst - centre) @ rot.T + centre
    # `dst` is a jittered quad in source pixels; whatever lies inside it becomes the new crop.
    out_w, out_h = round(w + 2 * m), round(h + 2 * m)
    target = np.float32([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]])
    matrix = cv2.getPerspectiveTransform(dst.astype(np.float32), target)
    return cv2.warpPerspective(
        img, matrix, (max(out_w, 4), max(out_h, 4)), borderMode=cv2.BORDER_REPLICATE
    )


def augment(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Photometric and geometric augmentation of an RGB uint8 word crop."""
    img = _warp(img, rng, cfg)
    if rng.random() < cfg.downscale_prob:
        f = rng.uniform(0.35, 0.8)
        h, w = img.shape[:2]
        small = cv2.resize(
            img, (max(2, int(w * f)), max(2, int(h * f))), interpolation=cv2.INTER_AREA
        )
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < cfg.blur_prob:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.3))
    out = img.astype(np.float32)
    if rng.random() < cfg.jitter_prob:
        out = out * rng.uniform(0.6, 1.4) + rng.uniform(-40, 40)  # contrast, brightness
        out = out * rng.uniform(0.85, 1.15, 3)  # colour balance
    if rng.random() < cfg.gray_prob:
        out = np.repeat(out.mean(-1, keepdims=True), 3, -1)
    if rng.random() < cfg.noise_prob:
        out += rng.normal(0, rng.uniform(2, 10), out.shape)
    if rng.random() < cfg.invert_prob:
        out = 255.0 - out
    return np.clip(out, 0, 255).astype(np.uint8)


SynthFn = Callable[[np.random.Generator], tuple[np.ndarray, str]]


class WordBatcher:
    """Draws augmented training batches from real crops and a pool of synthetic crops.

    The pool is filled by `add_synthetic` (pre-rendered shards) and by rendering
    `synth_per_batch` new crops per batch with `synth` (rendering costs ~30-50 ms a crop, far
    more than augmenting one, so crops are rendered once and reused under new augmentations).
    The pool is a ring buffer of `pool_size` crops: old ones make room for new ones.
    """

    def __init__(
        self,
        sets: dict[str, list[WordSample]],
        charset: Charset,
        height: int,
        max_width: int,
        synth: SynthFn | None = None,
        synth_fraction: float = 0.0,
        synth_per_batch: int = 2,
        pool_size: int = 20000,
        augment_cfg: AugmentConfig | None = None,
    ) -> None:
        self.samples = [s for group in sets.values() for s in group]
        self.charset, self.height, self.max_width = charset, height, max_width
        self.synth, self.synth_per_batch = synth, synth_per_batch if synth else 0
        self.synth_fraction, self.pool_size = synth_fraction, pool_size
        self.pool: list[WordSample] = []
        self._next = 0  # ring-buffer write position once the pool is full
        self.augment_cfg = augment_cfg or AugmentConfig()

    def add_synthetic(self, samples: list[WordSample]) -> None:
        for sample in samples:
            if not sample.text or not self.charset.covers(sample.text):
                continue  # a renderer may draw characters the charset cannot write
            if len(self.pool) < self.pool_size:
                self.pool.append(sample)
            else:
                self.pool[self._next] = sample
                self._next = (self._next + 1) % self.pool_size

    def _draw(self, rng: np.random.Generator) -> WordSample:
        use_pool = self.pool and (not self.samples or rng.random() < self.synth_fraction)
        group = self.pool if use_pool else self.samples
        if not group:
            raise ClipSpotError("no training word crops: give IC15/IIIT5K roots or synthetic fonts")
        return group[rng.integers(len(group))]

    def batch(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[str]]:
        """(size, height, max_width, 3) uint8 images and their labels."""
        if self.synth is not None:
            self.add_synthetic([to_sample(*self.synth(rng)) for _ in range(self.synth_per_batch)])
        images, texts = [], []
        for _ in range(size):
            sample = self._draw(rng)
            images.append(
                fit_crop(augment(sample.image, rng, self.augment_cfg), self.height, self.max_width)
            )
            texts.append(sample.text)
        return np.stack(images), texts


def val_batches(
    samples: list[WordSample], height: int, max_width: int, size: int = 64
) -> list[tuple[np.ndarray, list[str]]]:
    """Un-augmented, pre-fitted validation batches (fitted once, reused every validation)."""
    fitted = [fit_crop(s.image, height, max_width) for s in samples]
    return [
        (np.stack(fitted[i : i + size]), [s.text for s in samples[i : i + size]])
        for i in range(0, len(samples), size)
    ]
