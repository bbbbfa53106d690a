"""Named sizes of FastTCM-CR50. Each is a plain function returning a frozen config.

- `cr50_full`: the paper's model. CLIP RN50 (width 64, embed 1024, text 512x12) — the only variant
  that accepts real OpenAI RN50 weights (`--clip-weights`).
- `cr50_cpu`: the shipped default. Same topology ([3, 4, 6, 3] bottlenecks, 3-conv stem, dense
  attention pool, frozen text transformer, VPG, BSM) at a quarter of the width, so detection plus
  recognition fit about 100 ms per 640x360 frame on 2 CPU threads.
- `cr50_cpu_plain`: `cr50_cpu` without the CLIP-side modules (prompt, BSM, VPG, ILM): DB on the
  FPN alone, the baseline of the ablation in docs/benchmarks.md. Not a product variant.
- `cr50_tiny`: for tests only.
"""

from __future__ import annotations

from dataclasses import replace

from pipeline.model.backbone import BackboneConfig
from pipeline.model.detector import DetectorConfig
from pipeline.model.matching import MatchingConfig
from pipeline.model.text_encoder import TextEncoderConfig


def cr50_full() -> DetectorConfig:
    return DetectorConfig()


def cr50_cpu() -> DetectorConfig:
    return DetectorConfig(
        backbone=BackboneConfig(width=16, embed_dim=256, heads=8),
        text=TextEncoderConfig(width=128, heads=2, layers=3, embed_dim=256),
        matching=MatchingConfig(vpg_width=64, vpg_heads=4, vpg_layers=3),
        neck_channels=64,
    )


def cr50_cpu_plain() -> DetectorConfig:
    return replace(cr50_cpu(), clip_modules=False)


def cr50_tiny() -> DetectorConfig:
    return DetectorConfig(
        backbone=BackboneConfig(layers=(1, 1, 1, 1), width=8, embed_dim=64, heads=2),
        text=TextEncoderConfig(width=32, heads=2, layers=1, embed_dim=64),
        matching=MatchingConfig(vpg_width=32, vpg_heads=2, vpg_layers=1),
        neck_channels=32,
    )


VARIANTS = {
    "cr50_full": cr50_full,
    "cr50_cpu": cr50_cpu,
    "cr50_cpu_plain": cr50_cpu_plain,
    "cr50_tiny": cr50_tiny,
}
