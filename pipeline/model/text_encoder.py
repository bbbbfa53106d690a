"""CLIP's text transformer, frozen, run on [SOS, learnable context, prompt tokens, EOS].

The tower is open_clip's own `TextTransformer` (same parameter names as OpenAI's checkpoint, so
real RN50 weights load into it). What open_clip does not offer is the TCM input: N learnable
context vectors inserted right after SOS and the language-prompt vector `cc` added to every token
embedding before the positional embedding (method.md §1.3-1.4). `encode` does exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass

import open_clip
import torch
from open_clip.model import CLIPTextCfg, _build_text_tower
from torch import nn


@dataclass(frozen=True)
class TextEncoderConfig:
    width: int = 512  # RN50: 512
    heads: int = 8
    layers: int = 12
    vocab_size: int = 49408
    max_length: int = 77  # positional embedding rows (OpenAI's 77; we use a prefix)
    embed_dim: int = 1024  # projection width = the joint image-text width


class CLIPTextEncoder(nn.Module):
    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.config = config
        text_cfg = CLIPTextCfg(
            context_length=config.max_length,
            vocab_size=config.vocab_size,
            width=config.width,
            heads=config.heads,
            layers=config.layers,
        )
        # QuickGELU: the activation OpenAI's CLIP text tower was trained with (method.md §1.1).
        self.tower = _build_text_tower(config.embed_dim, text_cfg, quick_gelu=True)

    def encode(
        self, token_ids: torch.Tensor, context: torch.Tensor, shift: torch.Tensor
    ) -> torch.Tensor:
        """token_ids (K, L0) from `tokenize`; context (N, width); shift (width,) -> (K, E)."""
        tower = self.tower
        prompts = token_ids.shape[0]
        x = tower.token_embedding(token_ids)  # (K, L0, width)
        ctx = context.unsqueeze(0).expand(prompts, -1, -1)
        x = torch.cat([x[:, :1], ctx, x[:, 1:]], dim=1)  # SOS, ctx_1..N, prompt..., EOS, pad
        length = x.shape[1]
        x = x + shift + tower.positional_embedding[:length]
        x = tower.transformer(x, attn_mask=tower.attn_mask[:length, :length])
        x = tower.ln_final(x)
        eos = token_ids.argmax(dim=-1) + context.shape[0]  # EOS has the largest BPE id
        x = x[torch.arange(prompts), eos]
        projection = tower.text_projection
        return projection(x) if isinstance(projection, nn.Module) else x @ projection


def tokenize(prompts: list[str], length: int) -> torch.Tensor:
    """BPE token ids (K, length) with SOS/EOS; long prompts are truncated (EOS kept)."""
    return open_clip.tokenize(prompts, context_length=length)
