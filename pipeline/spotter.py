"""Spotter: the image -> text-instances API every caller uses, as two steps and their sum.

    spotter = Spotter.load()                         # shipped weights, their default reader
    found = spotter.detect([rgb_a, rgb_b])           # list[list[Detection]]: polygons + scores
    readings = spotter.read(rgb_a, [d.polygon for d in found[0]])   # list[Reading]
    words = spotter.words(rgb_a, found[0])            # read + score: TextInstance | None each
    per_image = spotter.spot([rgb_a, rgb_b])          # both: list[list[TextInstance]]

`detect` runs the FastTCM-CR50 detector; `read` cuts each polygon out (`rectify_word`) and
runs the word reader chosen for the process (`Spotter.load(reader="ppocrv6")`, see
`pipeline/model/word_reader.py`); `spot` scores each word with the reader's calibration
(`calibration.py`) and drops unreadable or unlikely words. Video callers use the steps apart:
detect on keyframes, read only the tracks that need it.

The text encoder never runs on this path: the default prompt's embedding was computed once when
the weights were packed. A custom prompt is encoded once with `encode_prompt` (the service
shares the result between replicas through Redis) and passed back in:
    emb = spotter.encode_prompt("a custom prompt")
    spotter.spot(images, prompt_embedding=emb)
`spotter.checksum` identifies the weights file and the reader (outputs, cache keys).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import ClipSpotError
from pipeline.model.calibration import ReaderCalibration, word_features
from pipeline.model.checkpoint import FORMAT, build_detector, file_checksum, read_checkpoint
from pipeline.model.detect import detect_words
from pipeline.model.detector import FastTCMDetector
from pipeline.model.lexicon import Lexicon, LexiconConfig
from pipeline.model.postprocess import Detection, PostprocessConfig
from pipeline.model.preprocess import DEFAULT_MAX_SIDE
from pipeline.model.recognizer import load_recognizer
from pipeline.model.rectify import rectify_word
from pipeline.model.word_reader import OWN_READER, Reading, WordReader, load_reader, read_words
from pipeline.types import TextInstance

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "clipspot-default.pt"


def default_weights_path() -> Path:
    """`CLIPSPOT_WEIGHTS` if set, else the weights shipped in the repository."""
    return Path(os.environ.get("CLIPSPOT_WEIGHTS") or DEFAULT_WEIGHTS)


class Spotter:
    """FastTCM-CR50 detector (from a ClipSpot weights file) + a word reader."""

    def __init__(
        self,
        detector: FastTCMDetector,
        reader: WordReader | None,
        prompt_embedding: torch.Tensor,
        pixel_mean: tuple,
        pixel_std: tuple,
        weights_checksum: str,
        device: str = "cpu",
        max_side: int = DEFAULT_MAX_SIDE,
        postprocess: PostprocessConfig | None = None,
        calibration: ReaderCalibration | None = None,
    ) -> None:
        self.device = torch.device(device)
        # Channels-last: the network runs 1.26-1.43x faster on the AMD EPYC CPU (a 960x544
        # input, 2 threads: 105-123 -> 82-86 ms), identical polygons on 20 tune images.
        self.detector = detector.eval().to(self.device, memory_format=torch.channels_last)
        self.reader = reader
        self.default_embedding = prompt_embedding.float().reshape(1, -1)
        self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
        self.weights_checksum = weights_checksum
        self.checksum = spotter_checksum(weights_checksum, reader)
        self.max_side = max_side
        self.postprocess = postprocess or PostprocessConfig()
        self.calibration = calibration
        margin = self.postprocess.lexicon_margin
        self.lexicon = (
            Lexicon(reader.charset, LexiconConfig(margin=margin))
            if reader is not None and margin is not None
            else None
        )
        config = detector.config
        self.embed_dim = config.backbone.embed_dim
        self.default_prompt = config.prompt.text
        self.context_length = config.prompt.context_tokens + config.prompt.token_length

    @property
    def min_word_score(self) -> float:
        """The cut `spot` applies: the reader's calibrated one, else the weights' global one."""
        if self.calibration is not None:
            return self.calibration.min_word_score
        return self.postprocess.min_word_score

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        device: str = "cpu",
        max_side: int | None = None,
        input_scale: float | None = None,
        lexicon: bool = True,
        reader: str | None = None,
        threads: int | None = None,
    ) -> Spotter:
        """Load a weights file (default: the shipped one) and a reader (default: the one the
        weights name as theirs). `max_side` defaults to DEFAULT_MAX_SIDE; `input_scale`
        overrides the one tuned with the weights; `lexicon=False` reads without the English
        dictionary even if the weights use it; `threads` is the reader's CPU thread count."""
        path = Path(weights) if weights else default_weights_path()
        if device == "cuda" and not torch.cuda.is_available():
            raise ClipSpotError("--device cuda asked for, but no CUDA device is available")
        data = read_checkpoint(path)
        if data.get("format") != FORMAT:
            raise ClipSpotError(
                f"{path}: not a ClipSpot weights file (format {data.get('format')!r}, "
                f"expected {FORMAT!r}; pack training checkpoints with `clipspot export`)"
            )
        det = data["detector"]
        detector = build_detector(det["config"], det["state_dict"], str(path))
        recognizer = None
        if data.get("recognizer"):
            try:
                recognizer = load_recognizer(data["recognizer"]).to(device)
            except (ValueError, KeyError, RuntimeError) as err:
                raise ClipSpotError(f"{path}: recognizer weights do not load ({err})") from None
        postprocess = PostprocessConfig(**data.get("postprocess", {}))  # tuned with the weights
        if input_scale is not None:
            postprocess = replace(postprocess, input_scale=input_scale)
        if not lexicon:
            postprocess = replace(postprocess, lexicon_margin=None)
        checksum = file_checksum(path)
        name = reader or data.get("default_reader") or OWN_READER
        word_reader = None
        if recognizer is not None or reader is not None:
            word_reader = load_reader(name, recognizer, checksum, threads)
        calibration = None
        if name in data.get("readers", {}):
            calibration = ReaderCalibration.from_dict(data["readers"][name])
        return cls(
            detector,
            word_reader,
            data["prompt_embedding"],
            data["pixel_mean"],
            data["pixel_std"],
            checksum,
            device,
            max_side or DEFAULT_MAX_SIDE,
            postprocess,
            calibration,
        )

    def detect(
        self, images: Sequence[np.ndarray], prompt_embedding: np.ndarray | None = None
    ) -> list[list[Detection]]:
        """RGB uint8 (H, W, 3) images -> word polygons + detection scores, per image, in each
        image's pixels. Images of different sizes are batched by padding (see detect.py)."""
        for image in images:
            if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
                shape = getattr(image, "shape", None)
                raise ClipSpotError(f"expected an RGB image of shape (H, W, 3), got {shape}")
        return detect_words(
            self.detector,
            images,
            self._text_tensor(prompt_embedding),
            self.max_side,
            self.postprocess,
            self.pixel_mean,
            self.pixel_std,
        )

    def read(self, image: np.ndarray, polygons: Sequence[np.ndarray]) -> list[Reading]:
        """Read the words at given polygons of an image (also used to re-read tracks)."""
        if self.reader is None or not len(polygons):
            return [Reading("", 1.0) for _ in polygons]
        crops = [rectify_word(image, p, height=self.reader.crop_height) for p in polygons]
        return read_words(self.reader, crops, self.lexicon)

    def spot(
        self, images: Sequence[np.ndarray], prompt_embedding: np.ndarray | None = None
    ) -> list[list[TextInstance]]:
        """`detect`, then `read` each image's words, score them and keep the likely ones."""
        found = self.detect(images, prompt_embedding)
        results = []
        for image, detections in zip(images, found, strict=True):
            results.append([w for w in self.words(image, detections) if w is not None])
        return results

    def words(
        self, image: np.ndarray, detections: Sequence[Detection]
    ) -> list[TextInstance | None]:
        """Read the given detections of one image: one scored word per detection, None where
        `word` drops it. The second step of `spot`; the video runner calls it for the words
        that need reading, the services on whichever replica holds the model."""
        readings = self.read(image, [d.polygon for d in detections])
        return [self.word(d, r) for d, r in zip(detections, readings, strict=True)]

    def word(self, detection: Detection, reading: Reading) -> TextInstance | None:
        """A detection and its reading as the word `spot` reports, or None when it is dropped
        (nothing readable, or scored below the cut). The video runner builds words the same way."""
        word = TextInstance(
            detection.polygon, reading.text, self.word_score(detection.score, reading)
        )
        return word if self.keep(word) else None

    def word_score(self, detection: float, reading: Reading) -> float:
        """P(the word is right) by the reader's calibration; without one, the geometric mean of
        detection and read confidence (a word is as sure as both its box and its reading)."""
        if self.calibration is None:
            return float(np.sqrt(max(detection, 0.0) * max(reading.confidence, 0.0)))
        features = word_features(
            detection,
            reading.confidence,
            reading.in_dictionary,
            reading.corrected,
            len(reading.text),
        )
        return float(self.calibration.probability(features))

    def keep(self, word: TextInstance) -> bool:
        """Whether `spot` reports a scored word: readable and not below the cut."""
        if self.reader is None:  # detection-only weights: nothing was read
            return True
        readable = any(c.isalnum() for c in word.text)
        return readable and word.score >= self.min_word_score

    @torch.inference_mode()
    def encode_prompt(self, prompt: str) -> np.ndarray:
        """Run the text encoder on a prompt: float32 (embed_dim,). Deterministic."""
        if not prompt.strip():
            raise ClipSpotError("the text prompt is empty")
        if not self.detector.config.clip_modules:
            raise ClipSpotError("these weights have no CLIP-side modules (an ablation "
                                "baseline): a text prompt does not apply")
        embedding = self.detector.text_embedding(prompt)
        return embedding.float().cpu().numpy().reshape(-1)

    def _text_tensor(self, prompt_embedding: np.ndarray | None) -> torch.Tensor:
        if prompt_embedding is None:
            return self.default_embedding
        array = np.asarray(prompt_embedding, dtype=np.float32).reshape(-1)
        if array.shape[0] != self.embed_dim:
            raise ClipSpotError(
                f"prompt embedding has {array.shape[0]} values, these weights need {self.embed_dim}"
            )
        return torch.from_numpy(array).reshape(1, -1)


def spotter_checksum(weights_checksum: str, reader: WordReader | None) -> str:
    """12 hex digits naming the weights file and the reader (name, version, model hash)."""
    identity = reader.identity if reader is not None else "no reader"
    return hashlib.sha256(f"{weights_checksum}|{identity}".encode()).hexdigest()[:12]
