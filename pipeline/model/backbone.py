"""CR50: CLIP's ModifiedResNet trunk plus its attention pool applied densely.

open_clip's `ModifiedResNet.forward_intermediates` gives C2..C5 (strides 4/8/16/32). Its
`attnpool.forward` returns only the pooled token, so `dense_attention_pool` reuses the pool's own
weights (positional embedding, q/k/v/c projections) on *every* pixel token, the DenseCLIP trick TCM
relies on: pixel embeddings I (B, E, H/32, W/32) and the global token Ī (B, E). The 7x7 (or
image_size/32) positional embedding is bilinearly resized to the actual grid at every forward, so
any input size divisible by 32 works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from torch import nn


@dataclass(frozen=True)
class BackboneConfig:
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)  # RN50 topology
    width: int = 64  # stem width; 64 = RN50 (C5 has width*32 channels)
    embed_dim: int = 1024  # attention-pool output = the joint image-text width
    heads: int = 32  # attention-pool heads (RN50: width*32 // 64)
    image_size: int = 224  # CLIP pretraining size: pos-embed grid is image_size // 32


@dataclass(frozen=True, eq=False)
class BackboneOutput:
    features: list[torch.Tensor]  # C2..C5, strides 4, 8, 16, 32
    pixel_embeddings: torch.Tensor  # (B, E, H/32, W/32)
    global_embedding: torch.Tensor  # (B, E)


class CR50Backbone(nn.Module):
    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = ModifiedResNet(
            layers=list(config.layers),
            output_dim=config.embed_dim,
            heads=config.heads,
            image_size=config.image_size,
            width=config.width,
        )

    @property
    def out_channels(self) -> list[int]:
        width = self.config.width
        return [width * 4, width * 8, width * 16, width * 32]

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        out = self.trunk.forward_intermediates(
            images, indices=[1, 2, 3, 4], intermediates_only=True
        )
        features = out["image_intermediates"]
        global_embedding, pixel_embeddings = dense_attention_pool(self.trunk.attnpool, features[-1])
        return BackboneOutput(features, pixel_embeddings, global_embedding)


def dense_attention_pool(pool: nn.Module, c5: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP attention pool over all tokens: returns (global (B, E), pixels (B, E, h, w))."""
    batch, channels, h, w = c5.shape
    tokens = c5.flatten(2).permute(2, 0, 1)  # NCHW -> (HW)NC
    tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens], dim=0)  # (HW+1)NC
    tokens = tokens + resized_positional_embedding(pool.positional_embedding, h, w)[:, None, :]
    out, _ = F.multi_head_attention_forward(
        query=tokens,
        key=tokens,
        value=tokens,
        embed_dim_to_check=channels,
        num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True,
        training=pool.training,
        need_weights=False,
    )
    global_embedding = out[0]
    pixels = out[1:].permute(1, 2, 0).reshape(batch, -1, h, w)  # (HW)NE -> NEhw
    return global_embedding, pixels


def resized_positional_embedding(pos: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(1 + S*S, C) pos-embed -> (1 + h*w, C) by bilinear resize of the spatial part."""
    cls_pos, spatial = pos[:1], pos[1:]
    side = round(spatial.shape[0] ** 0.5)
    if (side, side) == (h, w):
        return pos
    grid = spatial.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
    return torch.cat([cls_pos, grid.permute(0, 2, 3, 1).reshape(h * w, -1)], dim=0)
