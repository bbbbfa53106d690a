"""Word recognizer: a rectified word crop -> text, by CTC over a narrow CR50-style encoder.

Input: RGB crops resized to `height` (32) keeping aspect, squeezed if wider than `max_width`
(128), right-padded to `max_width`. The encoder follows CLIP's ModifiedResNet: a 3-conv stem,
then Bottleneck blocks whose strides are average pools (anti-aliased) instead of strided convs.
The strides after the stem are (2, 1): the height collapses to 1 while the width keeps 1/4 of
the input, so the output is a 32-step sequence along the word. A 1-layer BiLSTM adds context
and a linear layer gives per-step charset logits (blank = 0). Reading (greedy CTC decoding, the
dictionary) is `word_reader.py`'s, the same for every reader.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.model.charset import DEFAULT_CHARS, Charset, greedy_read

PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's, so a CLIP-initialised stem would fit
PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class RecognizerConfig:
    height: int = 32  # input crop height (pixels)
    max_width: int = 128  # crops are padded (or squeezed) to this width
    stem_width: int = 48  # channels after the 3-conv stem
    planes: tuple[int, ...] = (24, 48, 64, 96)  # Bottleneck planes per stage (output = 4x)
    blocks: tuple[int, ...] = (1, 2, 2, 1)  # Bottleneck blocks per stage
    hidden: int = 160  # BiLSTM hidden size per direction
    dropout: float = 0.1


class Bottleneck(nn.Module):
    """CLIP's Bottleneck (open_clip.modified_resnet) with an anisotropic average-pool stride.

    open_clip's version only takes an int stride; text needs (2, 1) to keep horizontal detail.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        out = planes * self.expansion
        strided = stride != (1, 1)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if strided else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if strided or inplanes != out:
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride) if strided else nn.Identity()),
                        ("0", nn.Conv2d(inplanes, out, 1, bias=False)),
                        ("1", nn.BatchNorm2d(out)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(self.avgpool(y)))
        return self.relu(y + identity)


def _stem(width: int) -> nn.Sequential:
    half = width // 2
    return nn.Sequential(
        nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(half),
        nn.ReLU(True),
        nn.Conv2d(half, half, 3, padding=1, bias=False),
        nn.BatchNorm2d(half),
        nn.ReLU(True),
        nn.Conv2d(half, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(True),
        nn.AvgPool2d(2),
    )


class Recognizer(nn.Module):
    """Crop -> per-step CTC logits; `preprocess` fits crops into a batch."""

    def __init__(self, config: RecognizerConfig | None = None, charset: Charset | None = None):
        super().__init__()
        self.config = config = config or RecognizerConfig()
        self.charset = charset or Charset(DEFAULT_CHARS)
        layers: list[nn.Module] = [_stem(config.stem_width)]
        inplanes, height = config.stem_width, config.height // 4
        for planes, blocks in zip(config.planes, config.blocks, strict=True):
            stride = (2, 1) if height > 1 else (1, 1)
            height //= stride[0]
            for b in range(blocks):
                layers.append(Bottleneck(inplanes, planes, stride if b == 0 else (1, 1)))
                inplanes = planes * Bottleneck.expansion
        self.encoder = nn.Sequential(*layers)
        self.feature_height = height  # any height left is averaged away
        self.rnn = nn.LSTM(inplanes, config.hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * config.hidden, self.charset.num_classes)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float in [0, 1] -> logits (N, W/4, num_classes)."""
        x = (images - self.pixel_mean) / self.pixel_std
        x = self.encoder(x).mean(dim=2)  # (N, C, T)
        x, _ = self.rnn(x.transpose(1, 2))
        return self.head(self.dropout(x))

    def preprocess(self, crops: list[np.ndarray]) -> torch.Tensor:
        """RGB uint8 crops -> (N, 3, height, max_width) float batch on the model's device."""
        batch = np.stack([fit_crop(c, self.config.height, self.config.max_width) for c in crops])
        tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
        return tensor.to(self.pixel_mean.device)


def fit_crop(crop: np.ndarray, height: int, max_width: int) -> np.ndarray:
    """Resize to `height` keeping aspect (squeeze if too wide), pad right with the edge column.

    Edge padding, not black, so the padded region looks like background, not a character.
    """
    h, w = crop.shape[:2]
    if crop.ndim == 2:
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)
    width = int(np.clip(round(w * height / max(h, 1)), 1, max_width))
    resized = cv2.resize(
        crop[..., :3],
        (width, height),
        interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR,
    )
    if width < max_width:
        resized = np.pad(resized, ((0, 0), (0, max_width - width), (0, 0)), mode="edge")
    return resized


def greedy_decode(probs: np.ndarray, charset: Charset) -> list[tuple[str, float]]:
    """(N, T, C) probabilities -> (text, confidence) per crop (`charset.greedy_read`)."""
    return [greedy_read(p, charset) for p in probs]


def recognizer_checkpoint(model: Recognizer, step: int, metrics: dict) -> dict:
    """Everything `load_recognizer` needs, as a plain dict for torch.save."""
    return {
        "kind": "recognizer",
        "config": asdict(model.config),
        "charset": model.charset.chars,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": int(step),
        "metrics": dict(metrics),
    }


def load_recognizer(ckpt: dict) -> Recognizer:
    """Rebuild a Recognizer (eval mode) from `recognizer_checkpoint`'s dict.

    Raises ValueError with a one-line reason for anything else (wrong kind, architecture or
    charset); callers that know the file name turn it into a ClipSpotError.
    """
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "recognizer":
        kind = ckpt.get("kind") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"not a recognizer checkpoint (kind={kind!r})")
    try:
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["config"].items()}
        model = Recognizer(RecognizerConfig(**fields), Charset(ckpt["charset"]))
        # Shipped weights store fp16; the CPU model runs in fp32.
        state = {
            k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()
        }
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"recognizer checkpoint does not fit this code: {message}") from None
    return model.eval()
