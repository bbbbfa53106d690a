"""Speed per model variant: ms per 640x360 frame, detection + recognition (benchmark, not a test).

    .venv/bin/python deploy/bench_speed.py                       # 2 CPU threads, all variants
    .venv/bin/python deploy/bench_speed.py --variants cr50_cpu --runs 30
    .venv/bin/python deploy/bench_speed.py --device cuda

What is timed, per variant, on one real frame (the video decoded with `pipeline.decode`, resized
to 640x360):
- detector: `detect_words` end to end (resize/normalise, network, DB post-processing), with the
  prompt embedding precomputed as in production (the text encoder never runs per frame);
- recognizer: rectifying + reading a fixed 10 word crops (the shipped default's detections on
  this frame, cycled to 10; a grid of boxes if it found none), so variants compare on equal work;
- for the shipped default also the words it really found, and `Spotter.spot` as a whole;
- each word reader (`--reader`): ms per word on the same fixed crops, batched and alone.
`cr50_cpu` is the shipped default loaded with `Spotter.load` from weights/clipspot-default.pt.
The other variants are randomly initialised (network cost does not depend on the values; their
DB post-processing sees noise, so its share can differ) and use the shipped recognizer, which is
one design for every detector variant. Each number is a median over `--runs` after `--warmup`
(wall-clock ms; the last column is process CPU ms, all threads added, for detector + crops).
The load average is printed with the table: on a shared machine wall timings are inflated.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, without installing

from pipeline.decode import VideoReader  # noqa: E402
from pipeline.model.detect import detect_words  # noqa: E402
from pipeline.model.detector import FastTCMDetector  # noqa: E402
from pipeline.model.preprocess import DEFAULT_MAX_SIDE  # noqa: E402
from pipeline.model.variants import VARIANTS  # noqa: E402
from pipeline.model.word_reader import READER_NAMES  # noqa: E402
from pipeline.spotter import DEFAULT_WEIGHTS, Spotter  # noqa: E402

DEFAULT_VIDEO = "/work/shared/data/video/street_banner_960x506.mp4"
SHIPPED = "cr50_cpu"
FRAME_SIZE = (640, 360)  # (width, height)
FIXED_CROPS = 10


@dataclass(frozen=True)
class Row:
    variant: str
    params_m: float
    detector_ms: float
    words: int
    words_ms: float | None  # recognizer on the words this variant found (shipped default only)
    crops_ms: float  # recognizer on the fixed crops
    spot_ms: float | None  # Spotter.spot end to end (shipped default only)
    cpu_ms: float  # process CPU time of detector + fixed crops (all threads added up)

    @property
    def total_ms(self) -> float:
        """Detector + recognizer on the fixed crops: comparable across variants."""
        return self.detector_ms + self.crops_ms


def median_ms(
    fn: Callable[[], object], runs: int, warmup: int, device: torch.device
) -> tuple[float, float]:
    """Median (wall ms, process CPU ms) of `fn`. CPU time is what the frame cost the machine:
    on a loaded machine wall time is inflated by waiting, CPU time much less so."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(runs):
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        walls.append((time.perf_counter() - start) * 1000.0)
        cpus.append((time.process_time() - cpu_start) * 1000.0)
    return statistics.median(walls), statistics.median(cpus)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def read_frame(video: str, index: int) -> np.ndarray:
    """Frame `index` of the video (RGB), resized to 640x360."""
    for frame in VideoReader(video):
        if frame.index == index:
            return cv2.resize(frame.image, FRAME_SIZE, interpolation=cv2.INTER_AREA)
    raise SystemExit(f"{video}: has no frame {index}")


def fixed_polygons(found: list[np.ndarray], count: int) -> list[np.ndarray]:
    """`count` word polygons: the detections cycled, or a grid of word-sized boxes if none."""
    if found:
        return [found[i % len(found)] for i in range(count)]
    boxes = []
    for i in range(count):
        x, y = 20 + (i % 5) * 120, 40 + (i // 5) * 150
        boxes.append(np.array([[x, y], [x + 100, y], [x + 100, y + 30], [x, y + 30]], np.float32))
    return boxes


def bench_variant(
    name: str, spotter: Spotter, frame: np.ndarray, polygons: list[np.ndarray],
    args: argparse.Namespace,
) -> Row:
    device = spotter.device
    if name == SHIPPED:
        model, text = spotter.detector, spotter.default_embedding
    else:
        torch.manual_seed(0)
        model = FastTCMDetector(VARIANTS[name]()).eval().to(device)
        with torch.inference_mode():
            text = model.text_embedding().float().reshape(1, -1)  # once, as when packing weights
    params = sum(p.numel() for p in model.parameters()) / 1e6

    def detect() -> list:
        return detect_words(model, [frame], text, args.max_side, spotter.postprocess,
                            spotter.pixel_mean, spotter.pixel_std)[0]

    detector_ms, detector_cpu = median_ms(detect, args.runs, args.warmup, device)
    crops_ms, crops_cpu = median_ms(
        lambda: spotter.read(frame, polygons), args.runs, args.warmup, device
    )
    words, words_ms, spot_ms = len(detect()), None, None
    if name == SHIPPED:
        found = [d.polygon for d in detect()]
        words_ms = median_ms(
            lambda: spotter.read(frame, found), args.runs, args.warmup, device
        )[0]
        spot_ms = median_ms(lambda: spotter.spot([frame]), args.runs, args.warmup, device)[0]
    cpu_ms = detector_cpu + crops_cpu
    return Row(name, params, detector_ms, words, words_ms, crops_ms, spot_ms, cpu_ms)


def markdown(rows: list[Row]) -> str:
    def fmt(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}"

    lines = [
        f"| variant | params (M) | detector ms | recognizer ms ({FIXED_CROPS} crops) "
        f"| total ms (det + {FIXED_CROPS} crops) | words found | recognizer ms (words found) "
        "| Spotter.spot ms | total CPU ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        kind = "shipped, trained" if r.variant == SHIPPED else "random init"
        label = f"{r.variant} ({kind})"
        lines.append(
            f"| {label} | {r.params_m:.1f} | {fmt(r.detector_ms)} | {fmt(r.crops_ms)} "
            f"| {fmt(r.total_ms)} | {r.words} | {fmt(r.words_ms)} | {fmt(r.spot_ms)} "
            f"| {fmt(r.cpu_ms)} |"
        )
    return "\n".join(lines)


def reader_table(args: argparse.Namespace, frame: np.ndarray, polygons: list) -> str:
    """ms per word of each word reader: cutting + reading the fixed crops, in one call."""
    lines = ["| reader | ms per word (10 words in one call) | ms for one word alone |",
             "|---|---:|---:|"]
    for name in READER_NAMES:
        spotter = Spotter.load(args.weights, device=args.device, max_side=args.max_side,
                               reader=name, threads=args.threads)
        many = median_ms(lambda s=spotter: s.read(frame, polygons), args.runs, args.warmup,
                         spotter.device)[0]
        one = median_ms(lambda s=spotter: s.read(frame, polygons[:1]), args.runs, args.warmup,
                        spotter.device)[0]
        lines.append(f"| {name} | {many / len(polygons):.1f} | {one:.1f} |")
    return "\n".join(lines)


def cpu_model() -> str:
    """The processor's name (speed figures differ several-fold between CPU kinds)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(args: argparse.Namespace) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    where = (torch.cuda.get_device_name(0) if args.device == "cuda"
             else f"CPU {cpu_model()}, {torch.get_num_threads()} torch threads of "
                  f"{os.cpu_count()} cores")
    return (f"device: {where}; torch {torch.__version__}; python {platform.python_version()}; "
            f"frame {FRAME_SIZE[0]}x{FRAME_SIZE[1]} (frame {args.frame} of {args.video}); "
            f"median of {args.runs} runs after {args.warmup} warm-up; "
            f"load average (1, 5, 15 min): {load}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    order = [SHIPPED] + [v for v in VARIANTS if v != SHIPPED]
    parser.add_argument("--variants", default=",".join(order),
                        help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                        help="shipped weights (cr50_cpu and the recognizer)")
    parser.add_argument("--video", default=DEFAULT_VIDEO)
    parser.add_argument("--frame", type=int, default=30, help="frame index in the video")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch/OpenCV CPU threads")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE)
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    spotter = Spotter.load(args.weights, device=args.device, max_side=args.max_side)
    frame = read_frame(args.video, args.frame)
    found = detect_words(spotter.detector, [frame], spotter.default_embedding, args.max_side,
                         spotter.postprocess, spotter.pixel_mean, spotter.pixel_std)[0]
    polygons = fixed_polygons([d.polygon for d in found], FIXED_CROPS)
    rows = []
    for name in args.variants.split(","):
        rows.append(bench_variant(name, spotter, frame, polygons, args))
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(markdown(rows))
    print()
    print(reader_table(args, frame, polygons))
    print()
    source = f"{len(found)} detections of {SHIPPED}, cycled" if found else (
        f"a grid of 100x30 boxes ({SHIPPED} found no words on this frame)")
    print(f"fixed crops: {FIXED_CROPS} from {source}")
    print(environment(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
