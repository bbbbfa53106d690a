"""PP-OCRv6 rec small as a ClipSpot word reader, run by onnxruntime.

Source: `rapidocr/models/PP-OCRv6_rec_small.onnx` inside the `rapidocr` 3.10.0 wheel on PyPI
(RapidAI, Apache-2.0; the network is PaddleOCR's PP-OCRv6 small recognizer, Apache-2.0). The
file is read from the installed package: nothing is downloaded and no model file is committed.
Only `rapidocr`'s model file is used, not its pipeline.

The network is a CTC model over 18,710 classes (blank, 18,708 symbols listed in the ONNX
metadata key `character`, mostly CJK, then a space). ClipSpot keeps only the columns of its own
character set and renormalises them per step, so the English-dictionary guard and greedy
decoding work exactly as for ClipSpot's own reader, and a CJK glyph can never be read.

Input, as PaddleOCR feeds it: BGR, 48 px tall, aspect kept, scaled to [-1, 1], zero-padded on
the right to at least 320 px. Each crop is padded to a width bucket of its own (a multiple of
64 px), and only crops of one bucket share a batch, so a word's read never depends on which
other words were read with it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import ClipSpotError
from pipeline.model.charset import DEFAULT_CHARS, Charset

MODEL_FILE = "PP-OCRv6_rec_small.onnx"
HEIGHT = 48
MIN_WIDTH = 320  # PaddleOCR's rec_img_shape width: narrower inputs are padded up to it
BUCKET = 64  # pixels; widths are rounded up to a multiple of this
MAX_WIDTH = 1280  # longer lines are squeezed (a word is never this long at 48 px)
BATCH = 16


def model_path() -> Path:
    """The ONNX file inside the installed `rapidocr` package."""
    try:
        root = importlib.resources.files("rapidocr")
    except ModuleNotFoundError:
        raise ClipSpotError(
            "reader 'ppocrv6' needs the rapidocr package (pip install rapidocr==3.10.0)"
        ) from None
    path = Path(str(root / "models" / MODEL_FILE))
    if not path.is_file():
        raise ClipSpotError(f"reader 'ppocrv6': {path} is missing from the rapidocr package")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bucket_width(height: int, width: int) -> tuple[int, int]:
    """(resized width, padded width) of a crop scaled to HEIGHT px tall."""
    resized = min(MAX_WIDTH, max(1, math.ceil(HEIGHT * width / max(height, 1))))
    return resized, max(MIN_WIDTH, BUCKET * math.ceil(resized / BUCKET))


def prepare(crop: np.ndarray) -> np.ndarray:
    """RGB uint8 crop -> (3, HEIGHT, padded width) float32 in [-1, 1], BGR, zero-padded."""
    resized_w, padded_w = bucket_width(*crop.shape[:2])
    bgr = cv2.cvtColor(np.ascontiguousarray(crop[..., :3]), cv2.COLOR_RGB2BGR)
    resized = cv2.resize(bgr, (resized_w, HEIGHT), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((3, HEIGHT, padded_w), dtype=np.float32)
    out[:, :, :resized_w] = resized.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0
    return out


class PPOCRv6Reader:
    """WordReader over PP-OCRv6 rec small (onnxruntime, CPU)."""

    name = "ppocrv6"
    crop_height = HEIGHT

    def __init__(self, threads: int | None = None, charset: Charset | None = None) -> None:
        import onnxruntime as ort

        path = model_path()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: onnxruntime's default (one per core)
        options.inter_op_num_threads = 1
        # Spinning threads burn a busy machine's cores while they wait; sleep instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.charset = charset or Charset(DEFAULT_CHARS)
        self.columns = self._columns(self.session.get_modelmeta().custom_metadata_map)
        version = importlib.metadata.version("rapidocr")
        self.identity = (
            f"ppocrv6 ({MODEL_FILE} from rapidocr {version}, Apache-2.0, "
            f"sha256 {file_sha256(path)[:12]})"
        )

    def _columns(self, metadata: dict[str, str]) -> np.ndarray:
        """Output column of the blank and of each of our characters."""
        symbols = metadata.get("character", "").splitlines()
        if not symbols:
            raise ClipSpotError(f"reader 'ppocrv6': {MODEL_FILE} lists no characters")
        index = {s: i + 1 for i, s in enumerate(symbols)}  # 0 is the CTC blank
        index[" "] = len(symbols) + 1  # PaddleOCR appends the space after the list
        missing = [c for c in self.charset.chars if c not in index]
        if missing:
            raise ClipSpotError(f"reader 'ppocrv6': characters {missing!r} are not in the model")
        return np.array([0] + [index[c] for c in self.charset.chars], dtype=np.int64)

    def step_log_probs(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        inputs = [prepare(c) for c in crops]
        out: list[np.ndarray | None] = [None] * len(inputs)
        by_width: dict[int, list[int]] = {}
        for i, x in enumerate(inputs):
            by_width.setdefault(x.shape[2], []).append(i)
        for group in by_width.values():
            for start in range(0, len(group), BATCH):
                chunk = group[start : start + BATCH]
                probs = self._run(np.stack([inputs[i] for i in chunk]))
                for i, p in zip(chunk, probs, strict=True):
                    out[i] = p
        return out  # type: ignore[return-value]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, 48, W) -> (N, T, C) log-probabilities over our charset, renormalised."""
        (probs,) = self.session.run(None, {self.session.get_inputs()[0].name: batch})
        ours = probs[:, :, self.columns].astype(np.float64)
        ours /= np.maximum(ours.sum(-1, keepdims=True), 1e-12)
        return np.log(np.maximum(ours, 1e-12)).astype(np.float32)
