"""Image-text matching: BSM, the visual prompt generator (VPG) and the ILM score map.

Order (reference code, FastTCM path): BSM conditions the cached text embedding on the image's
global token -> VPG lets pixel embeddings attend to it -> cosine score map (ILM), which is
concatenated onto C5 and supervised by the auxiliary loss.

BSM fix: the reference code projects Ī with an all-ones 1024x512 matrix while t_out is 1024-d,
a broadcasting error (and rank-1). We use a square E x E projection initialised at identity, so
at initialisation BSM is exactly the paper's t̂ = cos(Ī, t)·Ī + t (on unit vectors).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MatchingConfig:
    vpg_width: int = 256  # reference: width 256, 4 heads, 3 layers
    vpg_heads: int = 4
    vpg_layers: int = 3
    vpg_dropout: float = 0.1
    vpg_gamma_init: float = 1e-3  # Î = I + γ·VPG(I, t̂); γ small so training starts from I


class BimodalSimilarityMatching(nn.Module):
    """t̂ = cos(g, t)·g + t with g = normalize(W Ī), t = normalize(t_out)."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.projection = nn.Linear(embed_dim, embed_dim, bias=False)
        nn.init.eye_(self.projection.weight)

    def forward(self, global_embedding: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """global (B, E), text (K, E) -> image-conditioned text (B, K, E)."""
        g = F.normalize(self.projection(global_embedding), dim=-1)
        t = F.normalize(text, dim=-1)
        similarity = g @ t.t()  # (B, K)
        return similarity.unsqueeze(-1) * g.unsqueeze(1) + t.unsqueeze(0)


class DecoderLayer(nn.Module):
    """Pre-norm transformer decoder layer: self-attention, cross-attention, MLP."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (
            nn.LayerNorm(width),
            nn.LayerNorm(width),
            nn.LayerNorm(width),
        )
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(
            nn.Linear(width, width * 4), nn.GELU(), nn.Dropout(dropout), nn.Linear(width * 4, width)
        )

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        q = self.norm1(x)
        x = x + self.self_attn(q, q, q, need_weights=False)[0]
        x = x + self.cross_attn(self.norm2(x), memory, memory, need_weights=False)[0]
        return x + self.mlp(self.norm3(x))


class VisualPromptGenerator(nn.Module):
    """Pixels (queries) attend to the text embedding (memory); the result is added back scaled."""

    def __init__(self, embed_dim: int, config: MatchingConfig) -> None:
        super().__init__()
        width = config.vpg_width
        self.query_proj = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, width))
        self.memory_proj = nn.Sequential(
            nn.LayerNorm(embed_dim), nn.Linear(embed_dim, width), nn.LayerNorm(width)
        )
        self.layers = nn.ModuleList(
            DecoderLayer(width, config.vpg_heads, config.vpg_dropout)
            for _ in range(config.vpg_layers)
        )
        self.out_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, embed_dim))
        self.gamma = nn.Parameter(torch.full((1,), config.vpg_gamma_init))

    def forward(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """pixels (B, E, h, w), text (B, K, E) -> refined pixels Î (B, E, h, w)."""
        batch, dim, h, w = pixels.shape
        tokens = pixels.flatten(2).transpose(1, 2)  # (B, hw, E)
        x = self.query_proj(tokens)
        memory = self.memory_proj(text)
        for layer in self.layers:
            x = layer(x, memory)
        refined = tokens + self.gamma * self.out_proj(x)
        return refined.transpose(1, 2).reshape(batch, dim, h, w)


def language_matching_scores(pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """ILM: cosine of every pixel embedding with every prompt -> (B, K, h, w) in [-1, 1]."""
    return torch.einsum("bchw,bkc->bkhw", F.normalize(pixels, dim=1), F.normalize(text, dim=-1))
