"""FastTCM language prompt: learnable context tokens + a generator fed a learnable meta-query.

TCM feeds the image's global token to the language prompt generator, so the text encoder must
run for every image. FastTCM (`is_v2` in the reference code) feeds a learnable *meta-query*
instead, which makes the text embedding image-independent: after training it is computed once,
stored in the checkpoint, and shared through the service's prompt cache. Image conditioning comes
back cheaply afterwards through BSM (matching.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.model.text_encoder import CLIPTextEncoder, tokenize

DEFAULT_PROMPT = "the pixels of many arbitrary-shape text instances."


@dataclass(frozen=True)
class PromptConfig:
    text: str = DEFAULT_PROMPT  # the predefined prompt of the reference code
    context_tokens: int = 4  # N learnable context vectors (paper default)
    token_length: int = 14  # BPE length of the prompt incl. SOS/EOS (reference: 14)


class LanguagePromptGenerator(nn.Module):
    """cc = LN(ReLU(LN(q) W1 + b1)) W2 + b2: joint width -> text width."""

    def __init__(self, embed_dim: int, text_width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.LayerNorm(embed_dim),
            nn.Linear(embed_dim, embed_dim),
            nn.ReLU(inplace=True),
            nn.LayerNorm(embed_dim),
            nn.Linear(embed_dim, text_width),
        )
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        return self.mlp(query)


class LearnablePrompt(nn.Module):
    """Owns the context tokens, the meta-query and the generator; produces t_out (K, E)."""

    def __init__(self, config: PromptConfig, text_width: int, embed_dim: int) -> None:
        super().__init__()
        self.config = config
        # std 0.02 like CLIP's token embeddings, so the context starts on the same scale as words.
        self.context = nn.Parameter(torch.empty(config.context_tokens, text_width))
        nn.init.trunc_normal_(self.context, std=0.02)
        self.meta_query = nn.Parameter(torch.empty(embed_dim))
        nn.init.trunc_normal_(self.meta_query, std=0.02)
        self.generator = LanguagePromptGenerator(embed_dim, text_width)

    def token_ids(self, prompt: str | None = None) -> torch.Tensor:
        return tokenize([prompt or self.config.text], self.config.token_length)

    def forward(self, encoder: CLIPTextEncoder, prompt: str | None = None) -> torch.Tensor:
        token_ids = self.token_ids(prompt).to(self.context.device)
        shift = self.generator(self.meta_query)  # image-independent: the FastTCM change
        return encoder.encode(token_ids, self.context, shift)
