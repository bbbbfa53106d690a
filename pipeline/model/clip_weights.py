"""Load real OpenAI CLIP RN50 weights (from a file the user has) into `cr50_full`.

Two file formats are accepted, and nothing is ever downloaded:
- OpenAI's `RN50.pt`, a TorchScript archive, read with `torch.jit.load` (its state dict);
- an open_clip state dict (`torch.save(model.state_dict())`), read with `weights_only=True`.
OpenAI and open_clip share parameter names: `visual.*` goes to the CR50 trunk, the text tower
(`token_embedding`, `positional_embedding`, `transformer.*`, `ln_final`, `text_projection`) to
the frozen text encoder. `logit_scale` and OpenAI's metadata entries are not needed.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from pipeline.errors import ClipSpotError
from pipeline.model.detector import FastTCMDetector

# attn_mask: the causal mask, a buffer TorchScript exports but we rebuild.
NOT_NEEDED = {"logit_scale", "input_resolution", "context_length", "vocab_size", "attn_mask"}
TEXT_KEYS = (
    "token_embedding.",
    "positional_embedding",
    "transformer.",
    "ln_final.",
    "text_projection",
)


def read_clip_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ClipSpotError(f"{path}: CLIP weights file not found")
    try:
        if _is_torchscript(path):
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ClipSpotError(
            f"{path}: cannot read CLIP weights ({str(err).splitlines()[0]})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ClipSpotError(f"{path}: expected a state dict or a TorchScript CLIP model")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist()
        )


def clip_to_detector_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    mapped = {}
    for key, value in state.items():
        if key in NOT_NEEDED:
            continue
        if key.startswith("visual."):
            mapped["backbone.trunk." + key.removeprefix("visual.")] = value
        elif key.startswith(TEXT_KEYS):
            mapped["text_encoder.tower." + key] = value
        else:
            mapped[key] = value  # reported as unexpected below
    return mapped


def load_clip_into_detector(model: FastTCMDetector, path: str | Path) -> str:
    """Copy CLIP weights into the model's backbone and text encoder; returns a one-line report.

    Raises ClipSpotError when a tensor's shape does not fit (a different CLIP, or a narrow
    variant) or when the file holds none of the expected weights.
    """
    mapped = clip_to_detector_keys(read_clip_state_dict(path))
    own = model.state_dict()
    wanted = [k for k in own if k.startswith(("backbone.trunk.", "text_encoder.tower."))]
    wanted = [k for k in wanted if not k.endswith("attn_mask")]
    unexpected = sorted(k for k in mapped if k not in own)
    for key, value in mapped.items():
        if key in own and own[key].shape != value.shape:
            raise ClipSpotError(
                f"{path}: {key} has shape {tuple(value.shape)} but this model expects "
                f"{tuple(own[key].shape)} (real RN50 weights need --variant cr50_full)"
            )
    missing = sorted(k for k in wanted if k not in mapped)
    if len(missing) == len(wanted):
        raise ClipSpotError(f"{path}: no CLIP RN50 weights found (keys like visual.conv1.weight)")
    if unexpected:
        raise ClipSpotError(
            f"{path}: {len(unexpected)} unexpected keys, e.g. {unexpected[:3]} "
            "(not a CLIP RN50 file?)"
        )
    if missing:
        raise ClipSpotError(f"{path}: {len(missing)} CLIP weights missing, e.g. {missing[:3]}")
    with torch.no_grad():
        for key, value in mapped.items():
            own[key].copy_(value.to(own[key].dtype))
    return f"loaded {len(mapped)} CLIP RN50 tensors from {path}"
