"""FastTCM vs TCM inference speed, same variant, same input, timing only (issue 13, 5a).

TCM feeds the image's global token to the language prompt generator, so the text encoder runs
on every frame; FastTCM feeds a learnable meta-query instead, so the prompt embedding is
computed once offline, and image conditioning comes back through BSM (pipeline/model/
prompts.py, matching.py). The TCM arm below is built from the detector's own modules and
changes only that: generator(global token) -> text encoder per image -> VPG -> ILM, no BSM.
Its prompt weights were never trained for an image input: fine for timing, meaningless for
accuracy. The paper (Yu et al., TPAMI 2024) reports FastTCM 48.5 % faster than TCM.

    .venv/bin/python -m bench.tcm_speed [--rounds 3 --runs 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import cv2
import numpy as np
import torch

from bench.common import load_average, log, machine
from bench.model_speed import detector_for, median_ms, read_frame
from pipeline.model.detector import FastTCMDetector
from pipeline.model.matching import language_matching_scores
from pipeline.model.preprocess import pad_batch, prepare
from pipeline.spotter import Spotter


@torch.inference_mode()
def tcm_forward(model: FastTCMDetector, images: torch.Tensor) -> torch.Tensor:
    """TCM's detector forward (probability map): the prompt depends on each image."""
    features = model.backbone(images)
    shift = model.prompt.generator(features.global_embedding)  # (B, width): per image
    tokens = model.prompt.token_ids().to(images.device).repeat(images.shape[0], 1)
    text = model.text_encoder.encode(tokens, model.prompt.context, shift.unsqueeze(1))  # (B, E)
    conditioned = text.unsqueeze(1)  # (B, 1, E): one prompt per image, no BSM in TCM
    pixels = model.vpg(features.pixel_embeddings, conditioned)
    score_map = language_matching_scores(pixels, conditioned)
    c2, c3, c4, c5 = features.features
    fused = model.neck([c2, c3, c4, torch.cat([c5, score_map], dim=1)])
    return model.head(fused).prob


@torch.inference_mode()
def fasttcm_forward(model: FastTCMDetector, images: torch.Tensor, text: torch.Tensor
                    ) -> torch.Tensor:
    return model(images, text).head.prob


def network_input(spotter: Spotter, size: tuple[int, int]) -> torch.Tensor:
    """The detector's input for a frame of `size`, as detect_words builds it (scale 1.5)."""
    image = cv2.resize(read_frame(), size, interpolation=cv2.INTER_AREA)
    prepared = prepare(image, spotter.max_side, spotter.pixel_mean, spotter.pixel_std,
                       spotter.postprocess.input_scale)
    return pad_batch([prepared.tensor]).contiguous(memory_format=torch.channels_last)


def run(variants: list[str], rounds: int, runs: int, size: tuple[int, int] = (640, 360)
        ) -> dict[str, Any]:
    spotter = Spotter.load()
    batch = network_input(spotter, size)
    rows = []
    for name in variants:
        model, text = detector_for(name, spotter)
        text = text.to(dtype=batch.dtype)
        fast, tcm = [], []
        for round_ in range(rounds):  # interleaved: a load drift hits both arms
            fast.append(median_ms(lambda m=model, t=text: fasttcm_forward(m, batch, t), runs, 1))
            tcm.append(median_ms(lambda m=model: tcm_forward(m, batch), runs, 1))
            log(f"tcm speed: {name} round {round_ + 1}: FastTCM {fast[-1][0]} ms, "
                f"TCM {tcm[-1][0]} ms")
        gains = [100 * (t[0] / f[0] - 1) for f, t in zip(fast, tcm, strict=True)]
        rows.append({"variant": name, "trained": name == "cr50_cpu",
                     "text_encoder": f"{model.config.text.width}x{model.config.text.layers}",
                     "fasttcm_ms": float(np.median([f[0] for f in fast])),
                     "tcm_ms": float(np.median([t[0] for t in tcm])),
                     "fasttcm_cpu_ms": float(np.median([f[1] for f in fast])),
                     "tcm_cpu_ms": float(np.median([t[1] for t in tcm])),
                     "tcm_slower_pct": {"median": round(float(np.median(gains)), 1),
                                        "min": round(min(gains), 1),
                                        "max": round(max(gains), 1)},
                     "load_average": load_average()})
    return {"input": f"{size[0]}x{size[1]} frame -> network {tuple(batch.shape[2:])}",
            "threads": torch.get_num_threads(), "rounds": rounds, "runs": runs,
            "paper_fasttcm_faster_pct": 48.5, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="cr50_cpu,cr50_full")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps({"machine": machine(), **run(args.variants.split(","), args.rounds,
                                                  args.runs)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
