"""DBNet loss plus TCM's auxiliary instance-language matching loss.

L = 5·BCE_ohem(P, G_shrink) + 10·L1(T, G_thresh | thresh mask) + Dice(B, G_shrink)
    + 1·BCE_ohem(up(S / τ), G_shrink)      (τ = 0.07; method.md §1.8)
Balanced BCE keeps all positives and the hardest negatives up to 3x their number (OHEM).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.model.detector import DetectorOutput


@dataclass(frozen=True)
class LossConfig:
    prob_weight: float = 5.0
    thresh_weight: float = 10.0
    binary_weight: float = 1.0
    aux_weight: float = 1.0  # λ of the ILM loss
    temperature: float = 0.07  # τ: cosine / τ -> logits
    negative_ratio: float = 3.0


@dataclass(frozen=True, eq=False)
class DetectionTargets:
    shrink: torch.Tensor  # (B, 1, H, W) 1 inside shrunk text kernels
    shrink_mask: torch.Tensor  # (B, 1, H, W) 0 on ignored (###, tiny) regions
    thresh: torch.Tensor  # (B, 1, H, W) threshold-map target in [thresh_min, thresh_max]
    thresh_mask: torch.Tensor  # (B, 1, H, W) 1 in the band around text borders


def balanced_bce(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, negative_ratio: float, logits: bool
) -> torch.Tensor:
    positive = gt * mask
    negative = (1 - gt) * mask
    n_pos = int(positive.sum().item())
    n_neg = min(int(negative.sum().item()), int(max(n_pos, 1) * negative_ratio))
    if logits:
        loss = F.binary_cross_entropy_with_logits(pred, gt, reduction="none")
    else:
        loss = F.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), gt, reduction="none")
    pos_loss = (loss * positive).sum()
    neg_loss = torch.topk((loss * negative).flatten(), n_neg).values.sum() if n_neg else 0.0
    return (pos_loss + neg_loss) / (n_pos + n_neg + 1e-6)


def dice_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    inter = (pred * gt * mask).sum()
    union = (pred * mask).sum() + (gt * mask).sum() + 1e-6
    return 1 - 2 * inter / union


def detection_loss(
    out: DetectorOutput, targets: DetectionTargets, config: LossConfig
) -> dict[str, torch.Tensor]:
    head = out.head
    losses = {
        "prob": config.prob_weight
        * balanced_bce(
            head.prob, targets.shrink, targets.shrink_mask, config.negative_ratio, False
        ),
        "binary": config.binary_weight
        * dice_loss(head.binary, targets.shrink, targets.shrink_mask),
    }
    l1 = (head.thresh - targets.thresh).abs() * targets.thresh_mask
    losses["thresh"] = config.thresh_weight * l1.sum() / (targets.thresh_mask.sum() + 1e-6)
    if out.score_map is not None:  # the ILM auxiliary loss; absent without CLIP-side modules
        logits = F.interpolate(
            out.score_map / config.temperature, size=targets.shrink.shape[-2:], mode="bilinear"
        )
        losses["aux"] = config.aux_weight * balanced_bce(
            logits, targets.shrink, targets.shrink_mask, config.negative_ratio, True
        )
    losses["total"] = sum(losses.values())
    return losses
