"""Model speed on CPU: ms per frame of each detector variant and input size, ms per word of
each word reader, at 1 and 2 threads (moved here from deploy/bench_speed.py).

    .venv/bin/python -m bench.model_speed [--variants cr50_cpu,cr50_full] [--runs 10]

What is timed, on one real frame (frame 30 of the street video, resized to each input size):
- detector: `detect_words` end to end (resize/normalise with the weights' 1.5x input scale,
  network, DB post-processing), the prompt embedding precomputed as in production (FastTCM:
  the text encoder never runs per frame). `cr50_cpu` is the shipped detector; other variants
  are randomly initialised (network cost does not depend on the values);
- readers: rectify + read 10 word crops (the shipped detector's words on the frame, cycled;
  a grid of boxes if it found none) in one call, and one word alone.
Each number is a median over `runs` after `warmup` (wall ms; CPU ms is the process's, all
threads added). No GPU is lent to this session: CPU only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch

from bench.common import DATA, load_average, log, machine
from pipeline.decode import VideoReader
from pipeline.model.detect import detect_words
from pipeline.model.detector import FastTCMDetector
from pipeline.model.variants import VARIANTS
from pipeline.model.word_reader import READER_NAMES
from pipeline.spotter import Spotter

VIDEO = DATA / "video" / "street_banner_960x506.mp4"
SHIPPED = "cr50_cpu"
SIZES = ((640, 360), (960, 540))
FIXED_CROPS = 10


def median_ms(fn: Callable[[], object], runs: int, warmup: int) -> tuple[float, float]:
    """Median (wall ms, process CPU ms) of `fn`: on a loaded machine wall time is inflated by
    waiting, CPU time much less so."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(runs):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        walls.append((time.perf_counter() - start) * 1000.0)
        cpus.append((time.process_time() - cpu_start) * 1000.0)
    return round(statistics.median(walls), 1), round(statistics.median(cpus), 1)


def read_frame(index: int = 30) -> np.ndarray:
    """Frame `index` of the street video (RGB, 960x506)."""
    for frame in VideoReader(str(VIDEO)):
        if frame.index == index:
            return frame.image
    raise SystemExit(f"{VIDEO}: has no frame {index}")


def fixed_polygons(found: list[np.ndarray], count: int) -> list[np.ndarray]:
    """`count` word polygons: the detections cycled, or a grid of word-sized boxes if none."""
    if found:
        return [found[i % len(found)] for i in range(count)]
    boxes = []
    for i in range(count):
        x, y = 20 + (i % 5) * 120, 40 + (i // 5) * 150
        boxes.append(np.array([[x, y], [x + 100, y], [x + 100, y + 30], [x, y + 30]], np.float32))
    return boxes


def detector_for(name: str, spotter: Spotter) -> tuple[FastTCMDetector, torch.Tensor]:
    if name == SHIPPED:
        return spotter.detector, spotter.default_embedding
    torch.manual_seed(0)
    model = FastTCMDetector(VARIANTS[name]()).eval()
    model = model.to(memory_format=torch.channels_last)  # the Spotter's layout
    with torch.inference_mode():
        text = model.text_embedding().float().reshape(1, -1)  # once, as when packing weights
    return model, text


def detector_rows(spotter: Spotter, frame: np.ndarray, variants: list[str], threads: int,
                  runs: int, warmup: int) -> list[dict[str, Any]]:
    rows = []
    for name in variants:
        model, text = detector_for(name, spotter)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for width, height in SIZES:
            image = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
            wall, cpu = median_ms(lambda m=model, i=image, t=text: detect_words(
                m, [i], t, spotter.max_side, spotter.postprocess, spotter.pixel_mean,
                spotter.pixel_std), runs, warmup)
            rows.append({"variant": name, "trained": name == SHIPPED, "params_m": round(params, 2),
                         "size": f"{width}x{height}", "threads": threads, "ms": wall,
                         "cpu_ms": cpu, "load_average": load_average()})
            log(f"model speed: {name} {width}x{height} {threads} threads: {wall} ms")
    return rows


def reader_rows(frame: np.ndarray, polygons: list[np.ndarray], threads: int, runs: int,
                warmup: int) -> list[dict[str, Any]]:
    rows = []
    for name in READER_NAMES:
        spotter = Spotter.load(reader=name, threads=threads)
        many = median_ms(lambda s=spotter: s.read(frame, polygons), runs, warmup)
        one = median_ms(lambda s=spotter: s.read(frame, polygons[:1]), runs, warmup)
        rows.append({"reader": name, "threads": threads,
                     "ms_per_word_batched": round(many[0] / len(polygons), 2),
                     "ms_one_word": one[0], "load_average": load_average()})
    return rows


def run(variants: list[str], runs: int, warmup: int = 2, threads_list: tuple[int, ...] = (1, 2)
        ) -> dict[str, Any]:
    before = torch.get_num_threads()
    spotter = Spotter.load()
    frame = read_frame()
    small = cv2.resize(frame, SIZES[0], interpolation=cv2.INTER_AREA)
    found = spotter.detect([small])[0]
    polygons = fixed_polygons([d.polygon for d in found], FIXED_CROPS)
    detectors, readers = [], []
    for threads in threads_list:
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        detectors += detector_rows(spotter, frame, variants, threads, runs, warmup)
        readers += reader_rows(small, polygons, threads, runs, warmup)
    torch.set_num_threads(before)
    return {"frame": f"frame 30 of {VIDEO.name}", "runs": runs, "warmup": warmup,
            "max_side": spotter.max_side, "input_scale": spotter.postprocess.input_scale,
            "crops": f"{FIXED_CROPS} ({len(found)} words found, cycled)",
            "detectors": detectors, "readers": readers}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=f"{SHIPPED},cr50_full")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    result = run(args.variants.split(","), args.runs)
    print(json.dumps({"machine": machine(), **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
