"""Render words as RGBA patches with TrueType fonts, and pick the words to render.

The low level of `clipspot synth`: fonts (system DejaVu, a `--fonts` folder, or Pillow's built-in
TrueType face), a small street-sign vocabulary plus numbers, prices and codes, and a renderer
that returns each word's pixels together with its exact ink box. Every later geometric
transform is applied to the patch and to the box alike, so the ground truth stays exact.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pipeline.errors import ClipSpotError

SYSTEM_FONT_ROOT = Path("/usr/share/fonts")
FONT_SUFFIXES = (".ttf", ".otf")
PROBE_TEXT = "Hamburgefonstiv"

# Common words on shop fronts, street signs and news tickers (all ASCII, so every font has them).
_WORDS = """open closed sale exit entrance parking street road avenue station hotel cafe coffee bar
    pizza bakery bank pharmacy market store shop center city park police taxi bus stop welcome
    free new fresh food hot cold drinks beer wine restaurant kitchen grill burger noodle sushi
    tea juice ice cream fashion shoes books music cinema theatre museum gallery library school
    office tower plaza square mall outlet discount offer today only now best quality service
    repair auto car wash fuel gas oil tyres motor garage hair salon beauty spa nails dental clinic
    hospital emergency doctor health fitness gym sports club pool beach sea river bridge north
    south east west main high king queen royal grand golden star moon sun green red blue black
    white silver lucky happy family house home garden flower fruit fish meat chicken rice bread
    milk cheese water light power phone mobile digital computer games toys baby kids school
    post mail express delivery cargo port dock gate floor level lift toilet ladies gents info
    tickets lottery news breaking live update weather traffic sport finance market shares
    council mayor election vote report storm rain warning alert delay closed open late night
    daily weekly special limited edition premium classic original central union national
    public private first second third next last one way no entry keep left right slow danger
    caution stop look listen push pull enter smoking allowed area zone visitors staff only"""
VOCABULARY = tuple(dict.fromkeys(_WORDS.split()))
SYLLABLES = ("ka", "lo", "mi", "ten", "ra", "sto", "vel", "dor", "ex", "ban", "ti", "que", "mar")
PUNCT_CHARS = "$%.:-/&'"


@dataclass(frozen=True)
class FontFace:
    """A font file (or Pillow's built-in face when `path` is None) and what it can show."""

    path: Path | None
    caps_only: bool = False  # lower-case letters look like capitals: render and label upper case
    min_size: int = 14  # thin faces are illegible when small


@dataclass(frozen=True)
class WordStyle:
    """How one word is painted."""

    fill: tuple[int, int, int]
    stroke_width: int = 0
    stroke_fill: tuple[int, int, int] = (0, 0, 0)
    shadow: tuple[int, int] | None = None  # drop-shadow offset in pixels
    shadow_alpha: int = 160


@dataclass(frozen=True, eq=False)
class TextPatch:
    """An RGBA patch (h, w, 4) uint8 and the clockwise ink quads (4, 2) of the words on it."""

    rgba: np.ndarray
    quads: tuple[np.ndarray, ...]
    texts: tuple[str, ...]


@functools.lru_cache(maxsize=512)
def load_font(face: FontFace, size: int) -> ImageFont.FreeTypeFont:
    if face.path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(str(face.path), size)


def _glyph(font: ImageFont.FreeTypeFont, char: str) -> np.ndarray:
    mask = font.getmask(char)
    return np.asarray(mask, dtype=np.uint8).reshape(mask.size[1], mask.size[0])


def _looks_like_capitals(font: ImageFont.FreeTypeFont) -> bool:
    """True for all-caps and small-caps faces: lower case without ascenders ('h' as tall as 'x')."""

    def ink_height(chars: str) -> float:
        return float(np.median([_glyph(font, c).any(axis=1).sum() for c in chars]))

    return ink_height("bdhkl") < 1.15 * max(1.0, ink_height("xzvwu"))


def _ink_fraction(font: ImageFont.FreeTypeFont) -> float:
    ink = np.asarray(font.getmask(PROBE_TEXT)) > 127
    return float(ink.mean()) if ink.size else 0.0


@functools.lru_cache(maxsize=8)
def find_fonts(directory: str | Path | None = None) -> tuple[FontFace, ...]:
    """The usable faces of `directory` (default: system DejaVu, else Pillow's built-in face).

    Faces whose strokes are hair-thin are dropped (unreadable at scene-text sizes); thin ones get
    a larger minimum size; all-caps and small-caps faces are flagged so labels match the pixels.
    """
    if directory is None:
        paths = sorted(p for p in SYSTEM_FONT_ROOT.rglob("DejaVu*.ttf") if "Math" not in p.name)
        if not paths:
            return (FontFace(path=None),)
    else:
        directory = Path(directory)
        if not directory.is_dir():
            raise ClipSpotError(f"{directory}: fonts folder not found")
        paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in FONT_SUFFIXES)
        if not paths:
            raise ClipSpotError(f"{directory}: no .ttf or .otf fonts in this folder")
    faces = []
    for path in paths:
        try:
            font = ImageFont.truetype(str(path), 40)
        except OSError as err:
            raise ClipSpotError(f"{path}: not a readable TrueType font ({err})") from None
        ink = _ink_fraction(font)
        if ink < 0.05:
            continue
        faces.append(FontFace(path, _looks_like_capitals(font), 14 if ink > 0.12 else 26))
    if not faces:
        raise ClipSpotError(f"{directory}: every font in this folder is too thin to read")
    return tuple(faces)


def random_text(rng: np.random.Generator) -> str:
    """A word as it appears on signs: vocabulary words in mixed case, numbers, prices, codes."""
    kind = rng.choice(["word", "word", "word", "word", "number", "price", "code", "made_up"])
    if kind == "number":
        return str(int(rng.integers(0, 10 ** int(rng.integers(1, 5)))))
    if kind == "price":
        euros, cents = int(rng.integers(1, 200)), int(rng.integers(0, 100))
        return f"${euros}.{cents:02d}" if rng.random() < 0.7 else f"{euros}.{cents:02d}"
    if kind == "code":
        letters = "".join(rng.choice(list("ABCDEFGHJKLMNPRSTUVWXYZ"), int(rng.integers(1, 3))))
        pattern = rng.choice(["{l}{n}", "{l}-{n}", "{n}{l}", "{n}:{m:02d}", "{n}%", "{n}-{m:04d}"])
        return pattern.format(l=letters, n=int(rng.integers(1, 100)), m=int(rng.integers(0, 60)))
    if kind == "made_up":
        word = "".join(rng.choice(SYLLABLES, int(rng.integers(2, 4))))
    else:
        word = str(rng.choice(VOCABULARY))
    case = rng.random()
    return word.upper() if case < 0.45 else word.title() if case < 0.8 else word


def label_for(face: FontFace, text: str) -> str:
    """The transcription of `text` as `face` draws it."""
    return text.upper() if face.caps_only else text


def _ink_quad(alpha: np.ndarray, pad: float) -> np.ndarray:
    """Clockwise quad (TL, TR, BR, BL) around the non-zero pixels, in pixel-centre coordinates."""
    ys, xs = np.nonzero(alpha)
    x0, x1 = xs.min() - 0.5 - pad, xs.max() + 0.5 + pad
    y0, y1 = ys.min() - 0.5 - pad, ys.max() + 0.5 + pad
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)


def render_word(text: str, face: FontFace, size: int, style: WordStyle) -> TextPatch:
    """Draw `text` (already a label of `face`) with its stroke and shadow on a transparent patch."""
    font = load_font(face, size)
    left, top, right, bottom = font.getbbox(text, stroke_width=style.stroke_width)
    # Height from the font's line metrics, not this word's ink, so words of one face and size
    # share a baseline when laid out side by side.
    ascent, descent = font.getmetrics()
    top, bottom = min(top, 0), max(bottom, ascent + descent)
    margin = 2 + size // 8 + (max(abs(v) for v in style.shadow) if style.shadow else 0)
    width, height = right - left + 2 * margin, bottom - top + 2 * margin
    origin = (margin - left, margin - top)
    ink = Image.new("L", (width, height), 0)
    ImageDraw.Draw(ink).text(
        origin, text, font=font, fill=255, stroke_width=style.stroke_width, stroke_fill=255
    )
    ink_alpha = np.asarray(ink)
    if not ink_alpha.any():
        raise ValueError(f"{text!r} draws no ink with {face.path}")
    colour = Image.new("RGB", (width, height), style.fill)
    if style.stroke_width:
        # The stroke colour goes where the stroked ink is but the plain glyph is not.
        plain = Image.new("L", (width, height), 0)
        ImageDraw.Draw(plain).text(origin, text, font=font, fill=255)
        colour = Image.composite(
            colour, Image.new("RGB", (width, height), style.stroke_fill), plain
        )
    rgba = np.dstack([np.asarray(colour), ink_alpha])
    if style.shadow:
        shadow = Image.new("L", (width, height), 0)
        shadow.paste(ink, style.shadow)
        shadow = shadow.filter(ImageFilter.GaussianBlur(max(1.0, size / 20)))
        shadow_alpha = np.asarray(shadow).astype(np.float32) * (style.shadow_alpha / 255)
        rgba = _over(rgba, np.zeros_like(rgba[..., :3]), shadow_alpha)
    quad = _ink_quad(ink_alpha, pad=1 + size * 0.04)
    return TextPatch(rgba=rgba, quads=(quad,), texts=(text,))


def _over(top: np.ndarray, under_rgb: np.ndarray, under_alpha: np.ndarray) -> np.ndarray:
    """Porter-Duff `top` over an (rgb, alpha) layer, both non-premultiplied."""
    ta = top[..., 3:].astype(np.float32) / 255
    ua = under_alpha[..., None].astype(np.float32) / 255
    out_a = ta + ua * (1 - ta)
    rgb = top[..., :3] * ta + under_rgb * ua * (1 - ta)
    rgb = np.where(out_a > 0, rgb / np.maximum(out_a, 1e-6), 0)
    return np.dstack([rgb, out_a * 255]).round().astype(np.uint8)


def luminance(rgb: np.ndarray | tuple[int, int, int]) -> float:
    r, g, b = np.asarray(rgb, dtype=np.float32).reshape(-1, 3).mean(axis=0)
    return float(0.299 * r + 0.587 * g + 0.114 * b)


def contrasting_colour(rng: np.random.Generator, background_luma: float) -> tuple[int, int, int]:
    """A saturated or neutral colour at least ~100 luma levels away from the background."""
    dark = background_luma > 128
    for _ in range(20):
        colour = rng.integers(0, 256, 3)
        if rng.random() < 0.5:  # neutral black/white text is the most common on signs
            colour = np.full(3, rng.integers(0, 50) if dark else rng.integers(215, 256))
        if abs(luminance(colour) - background_luma) > 100:
            return tuple(int(c) for c in colour)
    return (0, 0, 0) if dark else (255, 255, 255)


def random_style(rng: np.random.Generator, background_luma: float, size: int) -> WordStyle:
    fill = contrasting_colour(rng, background_luma)
    stroke = int(rng.integers(1, max(2, size // 12) + 1)) if rng.random() < 0.2 else 0
    stroke_fill = (0, 0, 0) if luminance(fill) > 128 else (255, 255, 255)
    shadow = None
    if rng.random() < 0.25:
        step = max(1, size // 14)
        shadow = (int(rng.integers(-step, step + 1)), step)
    return WordStyle(fill=fill, stroke_width=stroke, stroke_fill=stroke_fill, shadow=shadow)


def pick_face(rng: np.random.Generator, fonts: tuple[FontFace, ...], size: int) -> FontFace:
    usable = [face for face in fonts if face.min_size <= size] or list(fonts)
    return usable[int(rng.integers(len(usable)))]


def make_sign(
    rng: np.random.Generator,
    fonts: tuple[FontFace, ...],
    size: int,
    background_luma: float,
    plate: bool,
    max_words: int = 4,
) -> TextPatch:
    """One to three lines of words in one face and style, optionally on a coloured plate."""
    face = pick_face(rng, fonts, size)
    plate_colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    style = random_style(rng, luminance(plate_colour) if plate else background_luma, size)
    n_lines = 1 if max_words < 2 else int(rng.choice([1, 1, 1, 2, 2, 3]))
    lines: list[list[TextPatch]] = []
    for _ in range(n_lines):
        n_words = int(rng.integers(1, max(2, min(3, max_words - sum(map(len, lines))) + 1)))
        lines.append(
            [
                render_word(label_for(face, random_text(rng)), face, size, style)
                for _ in range(max(1, n_words))
            ]
        )
    gap, leading = int(size * 0.35), int(size * 0.25)
    widths = [sum(w.rgba.shape[1] for w in line) + gap * (len(line) - 1) for line in lines]
    heights = [max(w.rgba.shape[0] for w in line) for line in lines]
    margin = int(size * 0.4) if plate else 0
    canvas_w = max(widths) + 2 * margin
    canvas_h = sum(heights) + leading * (len(lines) - 1) + 2 * margin
    canvas = np.zeros((canvas_h, canvas_w, 4), np.uint8)
    if plate:
        plate_img = Image.new("L", (canvas_w, canvas_h), 0)
        ImageDraw.Draw(plate_img).rounded_rectangle(
            (0, 0, canvas_w - 1, canvas_h - 1), radius=int(size * rng.uniform(0, 0.4)), fill=255
        )
        canvas[..., :3] = plate_colour
        canvas[..., 3] = np.asarray(plate_img)
    quads, texts = [], []
    y = margin
    centred = rng.random() < 0.6
    for line, line_w, line_h in zip(lines, widths, heights, strict=True):
        x = margin + ((max(widths) - line_w) // 2 if centred else 0)
        for word in line:
            h, w = word.rgba.shape[:2]
            dy = y + (line_h - h) // 2
            region = canvas[dy : dy + h, x : x + w]
            region[:] = _over(word.rgba, region[..., :3].astype(np.float32), region[..., 3])
            quads.append(word.quads[0] + np.float32([x, dy]))
            texts.append(word.texts[0])
            x += w + gap
        y += line_h + leading
    return TextPatch(rgba=canvas, quads=tuple(quads), texts=tuple(texts))
