"""ClipSpot checkpoint files: training checkpoints and the packed inference weights.

The packed file (`clipspot export`, e.g. weights/clipspot-default.pt) carries everything
inference needs: the detector config and fp16 state, the recognizer's, pixel mean/std, the
charset, the default prompt and its precomputed embedding, and a format version. Its short
sha256 (`file_checksum`) identifies the weights in outputs and cache keys. Loading always uses
`weights_only=True`: a checkpoint is data, never code.

Beside a weights file may lie `<file>.sha256` (`sha256sum` format, written by `pack_weights`):
when it exists, `read_checkpoint` refuses a file whose sha256 differs, so a corrupt download or a
replaced file fails at load with one clear line instead of serving from unknown weights.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import ClipSpotError
from pipeline.model.backbone import BackboneConfig
from pipeline.model.detector import DetectorConfig, FastTCMDetector
from pipeline.model.matching import MatchingConfig
from pipeline.model.postprocess import PostprocessConfig
from pipeline.model.prompts import PromptConfig
from pipeline.model.text_encoder import TextEncoderConfig

FORMAT = "clipspot-weights/1"


def detector_config_to_dict(config: DetectorConfig) -> dict[str, Any]:
    return asdict(config)


def detector_config_from_dict(d: dict[str, Any]) -> DetectorConfig:
    backbone = dict(d["backbone"])
    backbone["layers"] = tuple(backbone["layers"])
    return DetectorConfig(
        backbone=BackboneConfig(**backbone),
        text=TextEncoderConfig(**d["text"]),
        prompt=PromptConfig(**d["prompt"]),
        matching=MatchingConfig(**d["matching"]),
        neck_channels=int(d["neck_channels"]),
        clip_modules=bool(d.get("clip_modules", True)),  # files before the ablation: always on
    )


def file_sha256(path: str | Path) -> str:
    """The full hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_checksum(path: str | Path) -> str:
    return file_sha256(path)[:12]


def sha256_path(path: str | Path) -> Path:
    """Where a file's recorded checksum lives: `<file>.sha256` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def write_sha256(path: str | Path) -> str:
    """Record the file's sha256 beside it (`sha256sum -c` reads it); returns the digest."""
    path = Path(path)
    digest = file_sha256(path)
    sha256_path(path).write_text(f"{digest}  {path.name}\n")
    return digest


def verify_sha256(path: str | Path) -> None:
    """Compare the file with its recorded sha256, if one is recorded (no record: no check)."""
    path, record = Path(path), sha256_path(path)
    if not record.is_file():
        return
    fields = record.read_text(errors="replace").split()
    expected = fields[0].lower() if fields else ""
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ClipSpotError(f"{record}: not a sha256 record (expected '<64 hex digits>  "
                            f"{path.name}')")
    actual = file_sha256(path)
    if actual != expected:
        raise ClipSpotError(
            f"{path}: sha256 {actual[:16]}… does not match the recorded {expected[:16]}… "
            f"({record}); the file is corrupt or was replaced"
        )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load with user-facing errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise ClipSpotError(f"{path}: weights file not found")
    verify_sha256(path)  # before unzipping: a replaced file is named as such, not as corrupt
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; a cut file loses its index
        raise ClipSpotError(f"{path}: not a readable checkpoint (truncated or corrupt?)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt zips/pickles
        reason = str(err).splitlines()[0][:120]
        raise ClipSpotError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): {reason}"
        ) from None
    if not isinstance(data, dict):
        raise ClipSpotError(
            f"{path}: not a ClipSpot checkpoint (top level is {type(data).__name__})"
        )
    return data


def build_detector(
    config_dict: dict[str, Any], state: dict[str, torch.Tensor], source: str
) -> FastTCMDetector:
    try:
        model = FastTCMDetector(detector_config_from_dict(config_dict))
    except (KeyError, TypeError, ValueError) as err:
        raise ClipSpotError(f"{source}: detector config is not understood ({err})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # size mismatches
        first = next(
            (line.strip() for line in str(err).splitlines() if "size mismatch" in line), ""
        )
        raise ClipSpotError(
            f"{source}: weights do not fit the FastTCM-CR50 architecture in its config ({first})"
        ) from None
    if missing or unexpected:
        raise ClipSpotError(
            f"{source}: weights do not fit the FastTCM-CR50 architecture in its config "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. "
            f"{(missing or unexpected)[0]})"
        )
    return model


def pack_weights(
    detector: FastTCMDetector,
    recognizer_checkpoint: dict[str, Any] | None,
    metrics: dict[str, Any],
    mean: tuple,
    std: tuple,
    path: str | Path,
    postprocess: PostprocessConfig | None = None,
) -> str:
    """Write the inference file (fp16 tensors) and its `.sha256` record; return its checksum.

    The prompt embedding is computed from the fp16-rounded weights, so the cached embedding and
    `Spotter.encode_prompt` on the loaded file agree to float tolerance.
    """
    half = {k: v.half() if v.is_floating_point() else v for k, v in detector.state_dict().items()}
    rounded = FastTCMDetector(detector.config).eval()
    rounded.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
    with torch.no_grad():
        embedding = rounded.text_embedding().float().cpu()
    packed = {
        "format": FORMAT,
        "detector": {"config": detector_config_to_dict(detector.config), "state_dict": half},
        "recognizer": recognizer_checkpoint,
        "pixel_mean": list(mean),
        "pixel_std": list(std),
        "prompt": detector.config.prompt.text,
        "prompt_embedding": embedding,
        "metrics": metrics,
        "postprocess": asdict(postprocess or PostprocessConfig()),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(packed, path)
    return write_sha256(path)[:12]
