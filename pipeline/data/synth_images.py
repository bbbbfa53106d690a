"""Synthetic scene-text images with exact ground truth (`clipspot synth images`).

Signs from `synth_text` are warped onto a background (a photo or a procedural street) by a
homography per sign; the same homography maps each word's ink quad, so the ground truth is exact
whatever the rotation and perspective. Photometric effects (lighting shadows, blur, noise,
colour) come last and move no pixel. `make_scene` and `render_word_crop` are the in-memory API
for on-the-fly training; `write_icdar_images` writes the ICDAR2015 layout for `clipspot eval`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.data import synth_text
from pipeline.data.readers import DONT_CARE, GroundTruthWord
from pipeline.data.synth_text import FontFace, TextPatch
from pipeline.errors import ClipSpotError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
JPEG_QUALITY = 92
# (top, horizon) sky colours: clear, overcast, dusk, night.
SKIES = np.array(
    [
        [[70, 130, 200], [170, 205, 235]],
        [[150, 155, 165], [205, 205, 210]],
        [[80, 70, 130], [235, 160, 110]],
        [[15, 20, 45], [50, 60, 90]],
    ]
)


@dataclass(frozen=True)
class SceneConfig:
    """How busy and how distorted a scene is. Heights are fractions of the image height."""

    max_signs: int = 9
    min_text_height: float = 0.025
    max_text_height: float = 0.12
    plate_probability: float = 0.45
    illegible_probability: float = 0.12  # tiny or blurred signs, labelled ###
    max_rotation: float = 30.0  # degrees
    max_perspective: float = 0.15  # corner jitter, fraction of the sign height
    effects: bool = True


@dataclass(frozen=True, eq=False)
class Placement:
    """A sign and the homography that maps its patch onto the image."""

    patch: TextPatch
    homography: np.ndarray  # (3, 3) float64, patch pixel centres -> image pixel centres


def load_backgrounds(directory: str | Path | None) -> tuple[np.ndarray, ...]:
    """The RGB photos in `directory` (none -> procedural backgrounds)."""
    if directory is None:
        return ()
    directory = Path(directory)
    if not directory.is_dir():
        raise ClipSpotError(f"{directory}: backgrounds folder not found")
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ClipSpotError(f"{directory}: no .jpg/.png background images in this folder")
    photos = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ClipSpotError(f"{path}: not a readable image")
        photos.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return tuple(photos)


def procedural_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A street-like picture: sky, facades with windows, road, low-frequency texture."""
    image = np.empty((height, width, 3), np.uint8)
    sky_top, sky_low = SKIES[int(rng.integers(len(SKIES)))] + rng.integers(-20, 21, (2, 3))
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image[:] = (sky_top * (1 - ramp) + sky_low * ramp).astype(np.uint8)
    ground = int(height * rng.uniform(0.72, 0.88))
    x = int(-rng.integers(0, width // 8 + 1))
    while x < width:
        w = int(width * rng.uniform(0.12, 0.4))
        top = int(height * rng.uniform(0.02, 0.4))
        colour = tuple(int(c) for c in rng.integers(40, 220, 3))
        cv2.rectangle(image, (x, top), (x + w, ground), colour, -1)
        _draw_windows(rng, image, (x, top, x + w, ground), colour)
        x += w
    road = int(rng.integers(50, 120))
    image[ground:] = (road, road, road + 5)
    cv2.line(image, (0, ground + 2), (width, ground + 2), (200, 200, 200), max(1, height // 150))
    # Grey (not per-channel) grime: coloured blotches look like nothing in a street.
    texture = rng.normal(0, 10, (max(2, height // 24), max(2, width // 24))).astype(np.float32)
    texture = cv2.resize(texture, (width, height), interpolation=cv2.INTER_CUBIC)
    texture += 3 * rng.standard_normal((height, width), dtype=np.float32)
    return np.clip(image + texture[..., None], 0, 255).astype(np.uint8)


def _draw_windows(rng: np.random.Generator, image: np.ndarray, box: tuple, colour: tuple) -> None:
    x0, y0, x1, y1 = box
    cell = int(rng.integers(18, 44))
    shade = np.clip(np.array(colour) * rng.uniform(0.3, 0.7), 0, 255)
    glass = tuple(int(c) for c in shade)
    for y in range(y0 + cell // 2, y1 - cell, cell):
        for x in range(x0 + cell // 3, x1 - cell // 2, cell):
            cv2.rectangle(image, (x, y), (x + cell // 2, y + cell // 2), glass, -1)


def background_image(
    rng: np.random.Generator, width: int, height: int, backgrounds: Sequence[np.ndarray] = ()
) -> np.ndarray:
    """A random crop of a photo (colour-jittered, maybe mirrored), or a procedural street."""
    if not backgrounds:
        return procedural_background(rng, width, height)
    photo = backgrounds[int(rng.integers(len(backgrounds)))]
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.55, 1.0) * min(pw / width, ph / height)
    cw, ch = max(8, int(width * scale)), max(8, int(height * scale))
    x, y = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    crop = cv2.resize(photo[y : y + ch, x : x + cw], (width, height), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    gain = rng.uniform(0.8, 1.2, 3) * rng.uniform(0.75, 1.15)
    return np.clip(crop * gain, 0, 255).astype(np.uint8)


def transform_points(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float64).reshape(-1, 1, 2)
    return cv2.perspectiveTransform(pts, homography).reshape(-1, 2).astype(np.float32)


def patch_outline(patch: TextPatch) -> np.ndarray:
    h, w = patch.rgba.shape[:2]
    return np.float32([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])


def paste_patch(image: np.ndarray, rgba: np.ndarray, homography: np.ndarray) -> None:
    """Alpha-blend `rgba`, warped by `homography`, into `image` in place.

    Warps premultiplied colour so transparent pixels do not bleed a dark fringe into the edges.
    """
    height, width = image.shape[:2]
    ph, pw = rgba.shape[:2]
    outline = np.float32([[-0.5, -0.5], [pw - 0.5, -0.5], [pw - 0.5, ph - 0.5], [-0.5, ph - 0.5]])
    corners = transform_points(homography, outline)
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 2, [width, height])
    if x1 <= x0 or y1 <= y0:
        return
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
    alpha = rgba[..., 3:].astype(np.float32) / 255
    premultiplied = np.dstack([rgba[..., :3] * alpha, alpha * 255]).astype(np.float32)
    warped = cv2.warpPerspective(
        premultiplied, shift @ homography, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR
    )
    cover = warped[..., 3:] / 255
    region = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = np.clip(region * (1 - cover) + warped[..., :3], 0, 255).round()


def placement_homography(
    rng: np.random.Generator, patch: TextPatch, centre: tuple[float, float], config: SceneConfig
) -> np.ndarray:
    """Rotate about the patch centre, jitter its corners (perspective), move it to `centre`."""
    outline = patch_outline(patch)
    half = outline - outline.mean(axis=0)
    degrees = rng.normal(0, config.max_rotation / 3) if rng.random() < 0.8 else 0.0
    angle = math.radians(float(np.clip(degrees, -config.max_rotation, config.max_rotation)))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    target = half @ rotation.T
    jitter = config.max_perspective * float(patch.rgba.shape[0])
    target = target + rng.uniform(-jitter, jitter, (4, 2)) + np.asarray(centre)
    return cv2.getPerspectiveTransform(outline, target.astype(np.float32)).astype(np.float64)


def random_placement(
    rng: np.random.Generator,
    image: np.ndarray,
    fonts: tuple[FontFace, ...],
    occupied: np.ndarray,
    config: SceneConfig,
) -> Placement | None:
    """A sign that fits inside `image` without touching `occupied`; marks its footprint there."""
    height, width = image.shape[:2]
    low, high = config.min_text_height * height, config.max_text_height * height
    size = int(math.exp(rng.uniform(math.log(max(12, low)), math.log(max(13, high)))))
    illegible = rng.random() < config.illegible_probability
    if illegible and rng.random() < 0.5:
        size = int(rng.integers(6, 10))
    for _ in range(3):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        luma = _local_luma(image, cx, cy, size)
        plate = rng.random() < config.plate_probability
        patch = synth_text.make_sign(rng, fonts, size, luma, plate, max_words=1 if illegible else 4)
        ph, pw = patch.rgba.shape[:2]
        # Rendering costs more than trying spots, so try several spots for each sign.
        for _ in range(8):
            homography = placement_homography(rng, patch, (cx, cy), config)
            if _fits(transform_points(homography, patch_outline(patch)), occupied) and (
                plate or abs(_local_luma(image, cx, cy, size) - luma) < 40  # keep the contrast
            ):
                if illegible:
                    patch = _illegible(rng, patch)
                return Placement(patch=patch, homography=homography)
            cx = rng.uniform(min(pw / 2, width / 2), max(width - pw / 2, width / 2))
            cy = rng.uniform(min(ph / 2, height / 2), max(height - ph / 2, height / 2))
    return None


def _local_luma(image: np.ndarray, cx: float, cy: float, size: int) -> float:
    x0, y0 = int(max(0, cx - 3 * size)), int(max(0, cy - size))
    return synth_text.luminance(image[y0 : int(cy + size) + 1, x0 : int(cx + 3 * size) + 1])


def _fits(footprint: np.ndarray, occupied: np.ndarray) -> bool:
    """Inside the image and clear of earlier signs; if so, claim the spot (with a small gap)."""
    height, width = occupied.shape
    if footprint.min() < 1 or (footprint.max(axis=0) > [width - 2, height - 2]).any():
        return False
    mask = np.zeros_like(occupied)
    cv2.fillPoly(mask, [np.round(footprint).astype(np.int32)], 1)
    if (mask & occupied).any():
        return False
    occupied |= cv2.dilate(mask, np.ones((5, 5), np.uint8))
    return True


def _illegible(rng: np.random.Generator, patch: TextPatch) -> TextPatch:
    """Blur small or faded words beyond reading and label them ###."""
    sigma = max(1.2, patch.rgba.shape[0] * rng.uniform(0.06, 0.12))
    rgba = cv2.GaussianBlur(patch.rgba, (0, 0), sigma)
    return TextPatch(rgba=rgba, quads=patch.quads, texts=(DONT_CARE,) * len(patch.texts))


def placed_words(
    placement: Placement, homography: np.ndarray | None = None
) -> list[GroundTruthWord]:
    """The words of a placement in image coordinates (after `homography`, e.g. a camera's)."""
    total = placement.homography if homography is None else homography @ placement.homography
    return [
        GroundTruthWord(polygon=transform_points(total, quad), text=text)
        for quad, text in zip(placement.patch.quads, placement.patch.texts, strict=True)
    ]


def apply_effects(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Lighting shadow, blur, sensor noise and a colour cast; geometry is untouched."""
    out = image.astype(np.float32)
    height, width = image.shape[:2]
    if rng.random() < 0.35:  # a soft shadow cast over part of the scene
        mask = np.zeros((height, width), np.float32)
        points = rng.uniform([0, 0], [width, height], (int(rng.integers(3, 6)), 2))
        cv2.fillPoly(mask, [cv2.convexHull(points.astype(np.int32))], 1.0)
        mask = cv2.GaussianBlur(mask, (0, 0), max(2.0, width / 60))
        out *= 1 - rng.uniform(0.25, 0.5) * mask[..., None]
    out = out * rng.uniform(0.85, 1.15, 3) + rng.uniform(-20, 20)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.1))
    elif rng.random() < 0.1:
        length = int(rng.integers(3, 6))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2] = 1 / length
        out = cv2.filter2D(out, -1, kernel)
    if rng.random() < 0.5:
        out += rng.uniform(2, 7) * rng.standard_normal(out.shape, dtype=np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    fonts: tuple[FontFace, ...] | None = None,
    backgrounds: Sequence[np.ndarray] = (),
    config: SceneConfig = SceneConfig(),
) -> tuple[np.ndarray, list[GroundTruthWord]]:
    """One RGB uint8 (height, width, 3) scene and its words (clockwise quads, ### = unreadable)."""
    fonts = fonts or synth_text.find_fonts()
    image = background_image(rng, width, height, backgrounds)
    occupied = np.zeros((height, width), np.uint8)
    words: list[GroundTruthWord] = []
    for _ in range(int(rng.integers(max(1, config.max_signs // 3), config.max_signs + 1))):
        placement = random_placement(rng, image, fonts, occupied, config)
        if placement is not None:
            paste_patch(image, placement.patch.rgba, placement.homography)
            words.extend(placed_words(placement))
    if config.effects:
        image = apply_effects(rng, image)
    return image, words


def render_word_crop(
    rng: np.random.Generator,
    text: str | None = None,
    fonts: tuple[FontFace, ...] | None = None,
    backgrounds: Sequence[np.ndarray] = (),
) -> tuple[np.ndarray, str]:
    """A loosely cropped word image (RGB uint8) and its label, for recognizer training.

    With `text` given, the label is `text` unless an all-caps face drew it (then upper case).
    """
    fonts = fonts or synth_text.find_fonts()
    size = int(rng.integers(20, 56))
    face = synth_text.pick_face(rng, fonts, size)
    label = synth_text.label_for(face, text if text else synth_text.random_text(rng))
    config = SceneConfig(max_rotation=6, max_perspective=0.08)
    canvas_w = int(size * (0.8 * len(label) + 4))
    image = background_image(rng, canvas_w, size * 4, backgrounds)
    luma = synth_text.luminance(image[size : 3 * size])
    patch = synth_text.render_word(label, face, size, synth_text.random_style(rng, luma, size))
    homography = placement_homography(rng, patch, (canvas_w / 2, size * 2), config)
    paste_patch(image, patch.rgba, homography)
    quad = transform_points(homography, patch.quads[0])
    pad = size * rng.uniform(0.0, 0.2, 4)
    x0, y0 = np.maximum(np.floor(quad.min(axis=0) - pad[:2]).astype(int), 0)
    x1, y1 = np.ceil(quad.max(axis=0) + pad[2:]).astype(int) + 1
    return apply_effects(rng, image[y0:y1, x0:x1]), label


def write_icdar_images(
    out_dir: str | Path,
    count: int,
    seed: int,
    width: int,
    height: int,
    fonts: tuple[FontFace, ...] | None = None,
    backgrounds: Sequence[np.ndarray] = (),
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write `img_1.jpg .. img_N.jpg` and `gt_img_N.txt` (ICDAR2015: 8 ints + text a line)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(1, count + 1):
        # One generator per image: image N is the same whatever `count` is.
        image, words = make_scene(
            np.random.default_rng([seed, number]), width, height, fonts, backgrounds
        )
        path = out_dir / f"img_{number}.jpg"
        cv2.imwrite(str(path), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        lines = [
            ",".join(str(round(float(v))) for v in w.polygon.ravel()) + f",{w.text}" for w in words
        ]
        (out_dir / f"gt_img_{number}.txt").write_text("".join(f"{line}\n" for line in lines))
        paths.append(path)
        if progress:
            progress(1)
    return paths
