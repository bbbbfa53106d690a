"""Spotter: the end-to-end image -> text-instances API every caller uses.

    spotter = Spotter.load()                       # shipped default weights, CPU
    per_image = spotter.spot([rgb_a, rgb_b])        # list[list[TextInstance]], track_id None

The service layer shares prompt embeddings through Redis with:
    emb = spotter.encode_prompt("a custom prompt")  # runs the text encoder once
    spotter.spot(images, prompt_embedding=emb)       # text encoder never runs here
`spotter.checksum` identifies the weights (outputs, cache keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.types import TextInstance

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "clipspot-default.pt"


class Spotter:
    """FastTCM-CR50 detector + word recognizer, loaded from one ClipSpot checkpoint."""

    checksum: str  # short sha256 of the weights file
    embed_dim: int  # width of prompt embeddings (what Redis stores)
    default_prompt: str
    context_length: int

    @classmethod
    def load(
        cls, weights: str | Path | None = None, device: str = "cpu", max_side: int = 960
    ) -> Spotter:
        raise NotImplementedError  # filled in by the model work (issue 3)

    def spot(
        self, images: Sequence[np.ndarray], prompt_embedding: np.ndarray | None = None
    ) -> list[list[TextInstance]]:
        """RGB uint8 (H, W, 3) images -> words per image, polygons in each image's pixels."""
        raise NotImplementedError

    def encode_prompt(self, prompt: str) -> np.ndarray:
        """Run the text encoder on a prompt: float32 (embed_dim,). Deterministic."""
        raise NotImplementedError

    def recognize(
        self, image: np.ndarray, polygons: Sequence[np.ndarray]
    ) -> list[tuple[str, float]]:
        """Read the words at given polygons of an image (re-recognition for tracks)."""
        raise NotImplementedError
