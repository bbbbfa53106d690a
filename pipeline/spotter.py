"""Spotter: the end-to-end image -> text-instances API every caller uses.

    spotter = Spotter.load()                       # shipped default weights, CPU
    per_image = spotter.spot([rgb_a, rgb_b])        # list[list[TextInstance]], track_id None

The text encoder never runs on this path: the default prompt's embedding was computed once when
the weights were packed. A custom prompt is encoded once with `encode_prompt` (the service
shares the result between replicas through Redis) and passed back in:
    emb = spotter.encode_prompt("a custom prompt")
    spotter.spot(images, prompt_embedding=emb)
`spotter.checksum` identifies the weights (outputs, cache keys).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import ClipSpotError
from pipeline.model.checkpoint import FORMAT, build_detector, file_checksum, read_checkpoint
from pipeline.model.detect import detect_words
from pipeline.model.detector import FastTCMDetector
from pipeline.model.lexicon import Lexicon, LexiconConfig
from pipeline.model.postprocess import PostprocessConfig
from pipeline.model.preprocess import DEFAULT_MAX_SIDE
from pipeline.model.recognizer import Recognizer, load_recognizer
from pipeline.model.rectify import rectify_word
from pipeline.types import TextInstance

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "clipspot-default.pt"


def default_weights_path() -> Path:
    """`CLIPSPOT_WEIGHTS` if set, else the weights shipped in the repository."""
    return Path(os.environ.get("CLIPSPOT_WEIGHTS") or DEFAULT_WEIGHTS)


class Spotter:
    """FastTCM-CR50 detector + word recognizer, loaded from one ClipSpot weights file."""

    def __init__(
        self,
        detector: FastTCMDetector,
        recognizer: Recognizer | None,
        prompt_embedding: torch.Tensor,
        pixel_mean: tuple,
        pixel_std: tuple,
        checksum: str,
        device: str = "cpu",
        max_side: int = DEFAULT_MAX_SIDE,
        postprocess: PostprocessConfig | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.detector = detector.eval().to(self.device)
        self.recognizer = recognizer.eval().to(self.device) if recognizer is not None else None
        self.default_embedding = prompt_embedding.float().reshape(1, -1)
        self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
        self.checksum = checksum
        self.max_side = max_side
        self.postprocess = postprocess or PostprocessConfig()
        margin = self.postprocess.lexicon_margin
        self.lexicon = (
            Lexicon(recognizer.charset, LexiconConfig(margin=margin))
            if recognizer is not None and margin is not None
            else None
        )
        config = detector.config
        self.embed_dim = config.backbone.embed_dim
        self.default_prompt = config.prompt.text
        self.context_length = config.prompt.context_tokens + config.prompt.token_length

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        device: str = "cpu",
        max_side: int | None = None,
        input_scale: float | None = None,
        lexicon: bool = True,
    ) -> Spotter:
        """Load a weights file (default: the shipped one). `max_side` defaults to
        DEFAULT_MAX_SIDE; `input_scale` overrides the one tuned with the weights;
        `lexicon=False` reads without the English dictionary even if the weights use it."""
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
                recognizer = load_recognizer(data["recognizer"])
            except (ValueError, KeyError, RuntimeError) as err:
                raise ClipSpotError(f"{path}: recognizer weights do not load ({err})") from None
        postprocess = PostprocessConfig(**data.get("postprocess", {}))  # tuned with the weights
        if input_scale is not None:
            postprocess = replace(postprocess, input_scale=input_scale)
        if not lexicon:
            postprocess = replace(postprocess, lexicon_margin=None)
        return cls(
            detector,
            recognizer,
            data["prompt_embedding"],
            data["pixel_mean"],
            data["pixel_std"],
            file_checksum(path),
            device,
            max_side or DEFAULT_MAX_SIDE,
            postprocess,
        )

    def spot(
        self, images: Sequence[np.ndarray], prompt_embedding: np.ndarray | None = None
    ) -> list[list[TextInstance]]:
        """RGB uint8 (H, W, 3) images -> words per image, polygons in each image's pixels."""
        for image in images:
            if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
                shape = getattr(image, "shape", None)
                raise ClipSpotError(f"expected an RGB image of shape (H, W, 3), got {shape}")
        text = self._text_tensor(prompt_embedding)
        detections = detect_words(
            self.detector,
            images,
            text,
            self.max_side,
            self.postprocess,
            self.pixel_mean,
            self.pixel_std,
        )
        results = []
        for image, found in zip(images, detections, strict=True):
            readings = self.recognize(image, [d.polygon for d in found])
            words = [
                TextInstance(d.polygon, text, _combined_score(d.score, conf))
                for d, (text, conf) in zip(found, readings, strict=True)
            ]
            results.append([w for w in words if self._keep(w)])
        return results

    def _keep(self, word: TextInstance) -> bool:
        if self.recognizer is None:  # detection-only weights: nothing was read
            return True
        readable = any(c.isalnum() for c in word.text)
        return readable and word.score >= self.postprocess.min_word_score

    def recognize(
        self, image: np.ndarray, polygons: Sequence[np.ndarray]
    ) -> list[tuple[str, float]]:
        """Read the words at given polygons of an image (also used to re-read tracks)."""
        if self.recognizer is None or not polygons:
            return [("", 1.0) for _ in polygons]
        crops = [rectify_word(image, p) for p in polygons]
        return self.recognizer.read(crops, self.lexicon)

    @torch.inference_mode()
    def encode_prompt(self, prompt: str) -> np.ndarray:
        """Run the text encoder on a prompt: float32 (embed_dim,). Deterministic."""
        if not prompt.strip():
            raise ClipSpotError("the text prompt is empty")
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


def _combined_score(detection: float, recognition: float) -> float:
    """Geometric mean: a word is as sure as both its box and its reading (stays in [0, 1])."""
    return float(np.sqrt(max(detection, 0.0) * max(recognition, 0.0)))
