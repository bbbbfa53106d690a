"""Synthetic videos with per-frame ground truth (`clipspot synth video`).

A video is a world picture with signs (placed as in `synth_images`) seen through a camera, plus
screen-space layers on top. Scenarios, freely combined:

- `pan`: the camera pans and zooms over a world larger than the frame;
- `signs`: most signs appear and disappear at random times (otherwise they stay up);
- `occlusion`: a pedestrian-sized shape walks across; words more than half hidden are don't-care;
- `ticker`: a news ticker scrolls words right to left along the bottom.

Each word's quad goes through the same homographies as its pixels (placement, then camera), so
the ground truth is exact. A word partly outside the frame keeps its full quad and is marked
don't-care (its visible text is partial); a word wholly outside is left out. Each component draws
from its own generator seeded by (seed, component), so the same seed gives the same world
whichever other scenarios are switched on (as long as `pan` and `ticker` are the same).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.data import synth_images, synth_text
from pipeline.data.h264_clips import encode_h264, read_back_pts
from pipeline.data.readers import DONT_CARE
from pipeline.data.synth_images import Placement, SceneConfig
from pipeline.data.synth_text import FontFace, WordStyle
from pipeline.data.video_gt import FrameGroundTruth, GroundTruthObject, VideoGroundTruth
from pipeline.errors import ClipSpotError

SCENARIOS = ("ticker", "pan", "signs", "occlusion")
TICKER_COLOURS = ((18, 40, 120), (160, 20, 30), (20, 20, 24), (0, 90, 70))
OCCLUDED_DONT_CARE = 0.5  # words hidden more than this are don't-care (ICDAR video rule)


@dataclass(frozen=True)
class VideoConfig:
    width: int = 640
    height: int = 360
    fps: float = 25.0
    seconds: float = 6.0
    seed: int = 0
    scenarios: tuple[str, ...] = SCENARIOS

    @property
    def frame_count(self) -> int:
        return max(1, round(self.seconds * self.fps))


def parse_scenarios(text: str) -> tuple[str, ...]:
    """`"ticker,pan"` -> ("ticker", "pan"); an unknown name -> ClipSpotError."""
    return parse_names(text, SCENARIOS, "scenario")


def parse_names(text: str, known: Sequence[str], kind: str) -> tuple[str, ...]:
    """A comma-separated `--KIND` list of known names, deduplicated in order; else one
    ClipSpotError line naming the unknown ones and the choices."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ClipSpotError(
            f"--{kind} {text!r}: unknown {kind} {', '.join(unknown) or '(none)'};"
            f" choose from {','.join(known)}"
        )
    return names


@dataclass(frozen=True, eq=False)
class Word:
    """A word with a track id, its quad in its layer, and when it is shown (seconds)."""

    track_id: int
    text: str
    quad: np.ndarray
    start: float = 0.0
    end: float = math.inf


@dataclass(frozen=True, eq=False)
class Sign:
    placement: Placement
    words: tuple[Word, ...]


class Ticker:
    """A band along the bottom with words scrolling right to left, `speed` pixels a frame."""

    def __init__(
        self,
        rng: np.random.Generator,
        config: VideoConfig,
        fonts: tuple[FontFace, ...],
        first_id: int,
    ) -> None:
        self.height = max(16, round(config.height * 0.11))
        self.top = config.height - self.height
        self.colour = TICKER_COLOURS[int(rng.integers(len(TICKER_COLOURS)))]
        self.speed = max(1, round(100 / config.fps))  # whole pixels: crisp text, exact quads
        self.origin = round(config.width * 0.4)  # where the strip's x=0 is in frame 0
        size = round(self.height * 0.6)
        face = synth_text.pick_face(rng, fonts, size)
        style = WordStyle(fill=(255, 255, 255) if rng.random() < 0.7 else (255, 220, 60))
        needed = config.frame_count * self.speed + config.width - self.origin
        patches, x = [], 0
        while x < needed:
            patch = synth_text.render_word(
                synth_text.label_for(face, synth_text.random_text(rng)), face, size, style
            )
            patches.append((x, patch))
            x += patch.rgba.shape[1] + (size if rng.random() < 0.8 else 3 * size)
        self.strip = np.zeros((self.height, x, 4), np.uint8)
        words = []
        for number, (x0, patch) in enumerate(patches):
            h, w = patch.rgba.shape[:2]
            y0 = (self.height - h) // 2
            top, bottom = max(0, y0), min(self.height, y0 + h)  # tall script faces get trimmed
            self.strip[top:bottom, x0 : x0 + w] = patch.rgba[top - y0 : bottom - y0]
            quad = patch.quads[0] + np.float32([x0, y0])
            words.append(Word(first_id + number, patch.texts[0], quad))
        self.words = tuple(words)

    def shift(self, index: int) -> int:
        return self.origin - index * self.speed

    def draw(self, frame: np.ndarray, index: int) -> None:
        band = frame[self.top :]
        band[:] = self.colour
        shift = self.shift(index)
        lo, hi = max(0, -shift), min(self.strip.shape[1], frame.shape[1] - shift)
        if hi > lo:
            part = self.strip[:, lo:hi]
            alpha = part[..., 3:].astype(np.float32) / 255
            region = band[:, lo + shift : hi + shift]
            region[:] = (region * (1 - alpha) + part[..., :3] * alpha).round()


class Walker:
    """A pedestrian-sized shape crossing the frame again and again (alternating directions)."""

    def __init__(self, rng: np.random.Generator, config: VideoConfig) -> None:
        w, h = config.width, config.height
        self.size = (int(w * rng.uniform(0.18, 0.28)), int(h * rng.uniform(0.65, 0.95)))
        self.crossing = float(rng.uniform(2.5, 4.0))  # seconds to cross
        self.cycle = self.crossing + float(rng.uniform(0.3, 1.2))
        self.offset = float(rng.uniform(0, self.cycle))
        self.colour = np.array(rng.integers(20, 120, 3), np.float32)
        self.frame_size = (w, h)

    def mask(self, t: float) -> np.ndarray:
        w, h = self.frame_size
        mask = np.zeros((h, w), np.uint8)
        k, phase = divmod(t + self.offset, self.cycle)
        if phase > self.crossing:
            return mask
        progress = phase / self.crossing if int(k) % 2 == 0 else 1 - phase / self.crossing
        bw, bh = self.size
        x = int(-bw + progress * (w + 2 * bw))
        head, top = max(4, int(bw * 0.22)), h - bh
        shoulders = top + 2 * head + 2 + bw // 4
        cv2.circle(mask, (x + bw // 2, top + head), head, 1, -1)
        cv2.ellipse(mask, (x + bw // 2, shoulders), (bw // 2, bw // 4), 0, 180, 360, 1, -1)
        cv2.rectangle(mask, (x, shoulders), (x + bw, h + 10), 1, -1)
        return mask

    def draw(self, frame: np.ndarray, mask: np.ndarray) -> None:
        shade = np.linspace(1.2, 0.7, frame.shape[0], dtype=np.float32)[:, None, None]
        stripes = (np.arange(frame.shape[1]) // 12 % 2 * 25).astype(np.float32)[None, :, None]
        body = np.clip(self.colour * shade + stripes, 0, 255)
        frame[:] = np.where(mask[..., None] > 0, body, frame).astype(np.uint8)


class VideoScene:
    """Renders frame `i` and its ground-truth objects; every component seeded separately."""

    def __init__(
        self,
        config: VideoConfig,
        fonts: tuple[FontFace, ...] | None = None,
        backgrounds: Sequence[np.ndarray] = (),
    ) -> None:
        self.config = config
        fonts = fonts or synth_text.find_fonts()
        scale = 1.6 if "pan" in config.scenarios else 1.0
        world_w, world_h = round(config.width * scale), round(config.height * scale)
        rng = np.random.default_rng([config.seed, 0])
        self.world = synth_images.background_image(rng, world_w, world_h, backgrounds)
        self.ticker = None
        occupied = np.zeros((world_h, world_w), np.uint8)
        if "ticker" in config.scenarios:
            occupied[world_h - round(config.height * 0.12) :] = 1
        self.signs: tuple[Sign, ...] = ()
        if set(config.scenarios) - {"ticker"}:  # a ticker alone runs over an empty street
            self.signs = self._place_signs(rng, fonts, occupied, scale)
        next_id = 1 + sum(len(s.words) for s in self.signs)
        if "ticker" in config.scenarios:
            self.ticker = Ticker(np.random.default_rng([config.seed, 3]), config, fonts, next_id)
        self.walker = None
        if "occlusion" in config.scenarios:
            self.walker = Walker(np.random.default_rng([config.seed, 4]), config)
        self.camera_phases = np.random.default_rng([config.seed, 5]).uniform(0, 2 * math.pi, 3)

    def _place_signs(
        self,
        rng: np.random.Generator,
        fonts: tuple[FontFace, ...],
        occupied: np.ndarray,
        scale: float,
    ) -> tuple[Sign, ...]:
        scene = SceneConfig(
            max_signs=round(7 * scale * scale),
            min_text_height=0.055 / scale,
            max_text_height=0.13 / scale,
            illegible_probability=0.08,
            max_rotation=15,
            max_perspective=0.12,
        )
        timing = np.random.default_rng([self.config.seed, 1])
        seconds = self.config.frame_count / self.config.fps
        signs, track_id = [], 1
        for _ in range(scene.max_signs):
            placement = synth_images.random_placement(rng, self.world, fonts, occupied, scene)
            if placement is None:
                continue
            start, end = 0.0, math.inf
            if "signs" in self.config.scenarios and timing.random() < 0.7:
                start = float(timing.uniform(0, seconds * 0.6))
                end = start + float(timing.uniform(min(1.5, seconds / 2), seconds))
            words = []
            for quad, text in zip(placement.patch.quads, placement.patch.texts, strict=True):
                words.append(Word(track_id, text, quad, start, end))
                track_id += 1
            signs.append(Sign(placement, tuple(words)))
        return tuple(signs)

    @property
    def tracks(self) -> dict[int, str]:
        words = [w for s in self.signs for w in s.words]
        words += list(self.ticker.words) if self.ticker else []
        return {w.track_id: w.text for w in words}

    def camera(self, t: float) -> np.ndarray:
        """World -> frame homography: a slow Lissajous pan with a gentle zoom (or identity)."""
        if "pan" not in self.config.scenarios:
            return np.eye(3)
        w, h = self.config.width, self.config.height
        world_h, world_w = self.world.shape[:2]
        px, py, pz = self.camera_phases
        zoom = 1.15 + 0.15 * math.sin(2 * math.pi * t / 9 + pz)
        cx = world_w / 2 + (world_w - w) / 2 * math.sin(2 * math.pi * t / 12 + px)
        cy = world_h / 2 + (world_h - h) / 2 * math.sin(2 * math.pi * t / 15 + py)
        x0, y0 = cx - w / (2 * zoom), cy - h / (2 * zoom)
        return np.array([[zoom, 0, -zoom * x0], [0, zoom, -zoom * y0], [0, 0, 1]])

    def render(self, index: int) -> tuple[np.ndarray, list[GroundTruthObject]]:
        """Frame `index` (RGB uint8) and its objects, sorted by track id."""
        t = index / self.config.fps
        w, h = self.config.width, self.config.height
        camera = self.camera(t)
        frame = cv2.warpAffine(self.world, camera[:2], (w, h), flags=cv2.INTER_LINEAR)
        cover = np.zeros((h, w), np.uint8)  # what hides the world: walker and ticker band
        visible = [s for s in self.signs if s.words[0].start <= t < s.words[0].end]
        for sign in visible:
            synth_images.paste_patch(
                frame, sign.placement.patch.rgba, camera @ sign.placement.homography
            )
        if self.walker:
            cover = self.walker.mask(t)
            self.walker.draw(frame, cover)
        objects = []
        if self.ticker:
            cover[self.ticker.top :] = 1
            self.ticker.draw(frame, index)
            shift = np.float32([self.ticker.shift(index), self.ticker.top])
            objects += [_object(word, word.quad + shift, None, w, h) for word in self.ticker.words]
        for sign in visible:
            total = camera @ sign.placement.homography
            objects += [
                _object(word, synth_images.transform_points(total, word.quad), cover, w, h)
                for word in sign.words
            ]
        objects = sorted((o for o in objects if o is not None), key=lambda o: o.track_id)
        return frame, objects


def _object(
    word: Word, quad: np.ndarray, cover: np.ndarray | None, width: int, height: int
) -> GroundTruthObject | None:
    """The word as seen in this frame: None when wholly outside, don't-care when cut or hidden."""
    if (quad.max(axis=0) < 0).any() or (quad.min(axis=0) > [width - 1, height - 1]).any():
        return None  # covers no pixel centre
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    inside = bool((quad >= -0.5).all() and (quad <= [width - 0.5, height - 0.5]).all())
    hidden = 0.0
    if inside and cover is not None:
        lo, hi = np.maximum(lo, 0), np.minimum(hi + 1, [width, height])
        mask = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.uint8)
        cv2.fillPoly(mask, [np.round(quad - lo).astype(np.int32)], 1)
        area = max(1, int(mask.sum()))
        hidden = float((mask & cover[lo[1] : hi[1], lo[0] : hi[0]]).sum()) / area
    dont_care = word.text == DONT_CARE or not inside or hidden > OCCLUDED_DONT_CARE
    return GroundTruthObject(word.track_id, quad.astype(np.float32), word.text, dont_care)


def check_size(config: VideoConfig) -> None:
    if not (64 <= config.width <= 4096 and 64 <= config.height <= 4096):
        raise ClipSpotError(f"--width/--height {config.width}x{config.height}: use 64..4096")
    if config.width % 2 or config.height % 2:
        raise ClipSpotError(
            f"--width/--height {config.width}x{config.height}: H.264 (4:2:0) needs even sizes"
        )
    if not 1 <= config.fps <= 120 or config.seconds <= 0:
        raise ClipSpotError(f"--fps {config.fps} / --seconds {config.seconds}: out of range")


def write_video(
    config: VideoConfig,
    mp4_path: str | Path,
    fonts: tuple[FontFace, ...] | None = None,
    backgrounds: Sequence[np.ndarray] = (),
    progress: Callable[[int], None] | None = None,
) -> VideoGroundTruth:
    """Render, encode (H.264, PyAV) and return the ground truth with pts read back from the file."""
    check_size(config)
    mp4_path = Path(mp4_path)
    scene = VideoScene(config, fonts, backgrounds)
    rendered = (scene.render(index) for index in range(config.frame_count))
    per_frame = encode_h264(mp4_path, (config.width, config.height), config.fps, rendered, progress)
    pts = read_back_pts(mp4_path)
    if len(pts) != len(per_frame):
        raise RuntimeError(f"{mp4_path}: wrote {len(per_frame)} frames, decoded {len(pts)}")
    frames = tuple(
        FrameGroundTruth(i, p, objs) for i, (p, objs) in enumerate(zip(pts, per_frame, strict=True))
    )
    seen = {o.track_id for f in frames for o in f.objects}  # e.g. signs the camera never shows
    tracks = {k: v for k, v in scene.tracks.items() if k in seen}
    return VideoGroundTruth(
        video=mp4_path.name,
        width=config.width,
        height=config.height,
        fps=float(config.fps),
        frames=frames,
        tracks=tracks,
    )
