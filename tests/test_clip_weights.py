"""Loading real OpenAI CLIP RN50 weights into cr50_full, from both file formats users have.

No CLIP checkpoint exists here, so the files are a randomly initialised open_clip RN50 saved the
way OpenAI ships RN50.pt (TorchScript) and the way open_clip users save it (a state dict).
"""

from __future__ import annotations

import open_clip
import pytest
import torch

from pipeline.errors import ClipSpotError
from pipeline.model.clip_weights import load_clip_into_detector
from pipeline.model.detector import FastTCMDetector
from pipeline.model.variants import cr50_cpu, cr50_full


@pytest.fixture(scope="module")
def rn50() -> torch.nn.Module:
    torch.manual_seed(0)
    return open_clip.create_model("RN50", pretrained=None, force_quick_gelu=True).eval()


@pytest.fixture(scope="module")
def full_detector() -> FastTCMDetector:
    return FastTCMDetector(cr50_full())


def _assert_loaded(detector: FastTCMDetector, rn50: torch.nn.Module) -> None:
    ours = detector.state_dict()
    theirs = rn50.state_dict()
    for key in ("conv1.weight", "layer4.2.conv3.weight", "attnpool.positional_embedding"):
        torch.testing.assert_close(ours[f"backbone.trunk.{key}"], theirs[f"visual.{key}"])
    for key in ("token_embedding.weight", "transformer.resblocks.11.mlp.c_proj.weight",
                "text_projection", "ln_final.bias"):
        torch.testing.assert_close(ours[f"text_encoder.tower.{key}"], theirs[key])


def test_loads_open_clip_state_dict(tmp_path, rn50, full_detector) -> None:
    path = tmp_path / "rn50_state_dict.pt"
    torch.save(rn50.state_dict(), path)
    report = load_clip_into_detector(full_detector, path)
    assert "loaded" in report
    _assert_loaded(full_detector, rn50)


def test_loads_torchscript_archive_like_openai_rn50(tmp_path, rn50, full_detector) -> None:
    path = tmp_path / "RN50.pt"
    torch.jit.save(torch.jit.script(rn50), str(path))
    load_clip_into_detector(full_detector, path)
    _assert_loaded(full_detector, rn50)


def test_reports_wrong_architecture_and_missing_keys(tmp_path, rn50) -> None:
    path = tmp_path / "rn50.pt"
    torch.save(rn50.state_dict(), path)
    with pytest.raises(ClipSpotError, match=r"expects .*cr50_full"):
        load_clip_into_detector(FastTCMDetector(cr50_cpu()), path)
    partial = {k: v for k, v in rn50.state_dict().items() if not k.startswith("visual.layer4")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(ClipSpotError, match=r"missing, e.g. .*layer4"):
        load_clip_into_detector(FastTCMDetector(cr50_full()), tmp_path / "partial.pt")
    extra = {**rn50.state_dict(), "decoder.weight": torch.zeros(3)}
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(ClipSpotError, match=r"unexpected keys.*decoder\.weight"):
        load_clip_into_detector(FastTCMDetector(cr50_full()), tmp_path / "extra.pt")
