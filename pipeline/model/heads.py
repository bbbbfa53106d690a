"""DBNet head: probability map P, threshold map T and the differentiable binarization.

Both branches upsample the stride-4 neck output back to input resolution (two stride-2
transposed convs). B = sigmoid(k (P - T)) with k = 50 (DBNet) trains P to separate touching
words; at inference only P is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True, eq=False)
class HeadOutput:
    prob: torch.Tensor  # (B, 1, H, W) text probability
    thresh: torch.Tensor | None  # (B, 1, H, W) adaptive threshold (training only)
    binary: torch.Tensor | None  # (B, 1, H, W) approximate binarization (training only)


def _upsampling_branch(channels: int) -> nn.Sequential:
    mid = max(channels // 4, 8)
    return nn.Sequential(
        nn.Conv2d(channels, mid, 3, padding=1, bias=False),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(mid, mid, 2, stride=2),
        nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(mid, 1, 2, stride=2),
        nn.Sigmoid(),
    )


class DBHead(nn.Module):
    def __init__(self, channels: int, k: float = 50.0) -> None:
        super().__init__()
        self.k = k
        self.prob_branch = _upsampling_branch(channels)
        self.thresh_branch = _upsampling_branch(channels)

    def forward(self, x: torch.Tensor) -> HeadOutput:
        prob = self.prob_branch(x)
        if not self.training:
            return HeadOutput(prob, None, None)
        thresh = self.thresh_branch(x)
        binary = torch.sigmoid(self.k * (prob - thresh))
        return HeadOutput(prob, thresh, binary)
