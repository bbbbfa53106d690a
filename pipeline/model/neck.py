"""FPN-C (DBNet's neck): lateral 1x1, top-down sum, 3x3 smoothing, all to stride 4, concat."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FPNC(nn.Module):
    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1, bias=False) for c in in_channels)
        self.smooth = nn.ModuleList(
            nn.Conv2d(channels, channels // 4, 3, padding=1, bias=False) for _ in in_channels
        )
        self.fuse = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.out_channels = channels

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse into fine
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        size = laterals[0].shape[-2:]
        outs = [
            F.interpolate(conv(x), size=size, mode="nearest") if i else conv(x)
            for i, (conv, x) in enumerate(zip(self.smooth, laterals, strict=True))
        ]
        return self.fuse(torch.cat(outs, dim=1))  # (B, channels, H/4, W/4)
