"""FastTCM detector: CR50 backbone + FastTCM text side + BSM/VPG/ILM + FPN-C + DB head.

Data flow of `forward` (read top to bottom):
    images -> backbone -> C2..C5, pixel embeddings I, global token Ī
    text embedding t_out (cached at inference, else the frozen text encoder on the prompt)
    t̂ = BSM(Ī, t_out);  Î = VPG(I, t̂);  S = cos(Î, t̂)           (ILM score map)
    FPN-C(C2, C3, C4, [C5; S]) -> DB head -> P (and T, B when training)

With `clip_modules=False` (the ablation arm of docs/benchmarks.md, variant `cr50_cpu_plain`)
the text side, BSM, VPG and the ILM score map are not built: FPN-C(C2..C5) -> DB head, the
paper's "without CLIP-side modules" baseline on the same backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from pipeline.model.backbone import BackboneConfig, CR50Backbone
from pipeline.model.heads import DBHead, HeadOutput
from pipeline.model.matching import (
    BimodalSimilarityMatching,
    MatchingConfig,
    VisualPromptGenerator,
    language_matching_scores,
)
from pipeline.model.neck import FPNC
from pipeline.model.prompts import LearnablePrompt, PromptConfig
from pipeline.model.text_encoder import CLIPTextEncoder, TextEncoderConfig


@dataclass(frozen=True)
class DetectorConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    neck_channels: int = 256
    clip_modules: bool = True  # False: no prompt, BSM, VPG or ILM (ablation baseline)


@dataclass(frozen=True, eq=False)
class DetectorOutput:
    head: HeadOutput
    score_map: torch.Tensor | None  # (B, K, H/32, W/32) ILM cosine map (aux loss); None if plain


class FastTCMDetector(nn.Module):
    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        if config.text.embed_dim != config.backbone.embed_dim:
            raise ValueError("text and image embed_dim must match (they meet in one space)")
        self.config = config
        embed_dim = config.backbone.embed_dim
        self.backbone = CR50Backbone(config.backbone)
        channels = self.backbone.out_channels
        if config.clip_modules:
            self.text_encoder = CLIPTextEncoder(config.text)
            self.text_encoder.requires_grad_(False)  # frozen, as in every TCM config (lr_mult 0)
            self.prompt = LearnablePrompt(config.prompt, config.text.width, embed_dim)
            self.bsm = BimodalSimilarityMatching(embed_dim)
            self.vpg = VisualPromptGenerator(embed_dim, config.matching)
            channels[-1] += 1  # the ILM score map rides on C5 (K = 1 prompt)
        self.neck = FPNC(channels, config.neck_channels)
        self.head = DBHead(config.neck_channels)

    def text_embedding(self, prompt: str | None = None) -> torch.Tensor:
        """Run the frozen text encoder on a prompt -> (1, E). Image-independent (FastTCM).

        A model without CLIP-side modules has no text side: a zero placeholder, never read.
        """
        if not self.config.clip_modules:
            if prompt is not None:
                raise ValueError("these weights have no CLIP-side modules: prompts do not apply")
            return torch.zeros(1, self.config.backbone.embed_dim)
        return self.prompt(self.text_encoder, prompt)

    def forward(self, images: torch.Tensor, text: torch.Tensor | None = None) -> DetectorOutput:
        """images (B, 3, H, W) normalised, H and W multiples of 32; text (K, E) or None."""
        features = self.backbone(images)
        if not self.config.clip_modules:
            return DetectorOutput(self.head(self.neck(list(features.features))), None)
        if text is None:
            text = self.text_embedding()
        conditioned = self.bsm(features.global_embedding, text)  # (B, K, E)
        pixels = self.vpg(features.pixel_embeddings, conditioned)
        score_map = language_matching_scores(pixels, conditioned)  # (B, K, h, w)
        c2, c3, c4, c5 = features.features
        fused = self.neck([c2, c3, c4, torch.cat([c5, score_map], dim=1)])
        return DetectorOutput(self.head(fused), score_map)

    def train(self, mode: bool = True) -> FastTCMDetector:
        super().train(mode)
        if self.config.clip_modules:
            self.text_encoder.eval()  # frozen tower: keep dropout-free, deterministic
        return self
