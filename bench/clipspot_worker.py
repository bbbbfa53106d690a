"""ClipSpot's side of a measured run, in a process of its own (like each peer's).

    .venv/bin/python -m bench.clipspot_worker --modes image --out-dir DIR IMAGE ...
    .venv/bin/python -m bench.clipspot_worker --modes every,fixed,adaptive --max-frames 50 \
        --out-dir DIR CLIP.mp4 ...

Prints one JSON line: per mode the frames, wall and CPU seconds of the spotting alone (model
loaded, frames decoded into memory first, as the peers are timed), frames/s and per-frame
latencies; and the process's peak RSS. Predictions go to DIR/clipspot_MODE.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch

from bench.common import load_average, peak_rss_mb
from pipeline.jsonl import write_frame_result
from pipeline.runner import EVERY_FRAME, RunnerConfig, VideoRunner
from pipeline.spotter import Spotter
from pipeline.types import FrameResult, VideoFrame

MODES = {
    "every": EVERY_FRAME,
    "fixed": RunnerConfig(detect_every=5, adaptive=False),
    "adaptive": RunnerConfig(),  # the default: keyframes at most 5 apart, and at cuts
}


def decode(path: Path, max_frames: int) -> list[VideoFrame]:
    frames = []
    with av.open(str(path)) as container:
        for i, f in enumerate(container.decode(video=0)):
            if i >= max_frames:
                break
            frames.append(VideoFrame(i, float(f.time), f.to_ndarray(format="rgb24")))
    return frames


def spot_images(spotter: Spotter, paths: list[Path], out: Any) -> dict[str, Any]:
    latencies, cpu = [], 0.0
    for path in paths:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        start, cpu_start = time.perf_counter(), time.process_time()
        words = spotter.spot([image])[0]
        latencies.append(1000 * (time.perf_counter() - start))
        cpu += time.process_time() - cpu_start
        write_frame_result(FrameResult(str(path), 0, None, tuple(words)), out)
    return summary(len(paths), sum(latencies) / 1000, cpu, {"images": latencies})


def spot_videos(spotter: Spotter, config: RunnerConfig, clips: dict, out: Any) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {}
    frames, wall, cpu = 0, 0.0, 0.0
    for source, decoded in clips.items():
        runner = VideoRunner(spotter, config, source=source)
        stamps = latencies.setdefault(source, [])
        cpu_start, start = time.process_time(), time.perf_counter()
        last = start
        for result in runner.run(decoded):
            now = time.perf_counter()
            stamps.append(1000 * (now - last))  # the time this frame took to come out
            last = now
            write_frame_result(result, out)
        runner.finish()
        wall += time.perf_counter() - start
        cpu += time.process_time() - cpu_start
        frames += len(decoded)
    return summary(frames, wall, cpu, latencies)


def summary(frames: int, wall: float, cpu: float, latencies: dict) -> dict[str, Any]:
    rounded = {k: [round(x, 1) for x in v] for k, v in latencies.items()}
    return {"frames": frames, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "fps": round(frames / wall, 3) if wall else 0.0, "latency_ms": rounded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--modes", default="image", help="image, or any of every,fixed,adaptive")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-frames", type=int, default=10**9, help="per video")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--reader", default=None, help="word reader (default: the weights')")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    load_start = time.perf_counter()
    spotter = Spotter.load(reader=args.reader, threads=args.threads)
    spotter.spot([np.full((360, 640, 3), 127, np.uint8)])  # lazy set-up is not a frame's cost
    load_s = time.perf_counter() - load_start
    args.out_dir.mkdir(parents=True, exist_ok=True)
    modes: dict[str, Any] = {}
    if args.modes == "image":
        with (args.out_dir / "clipspot_image.jsonl").open("w") as out:
            modes["image"] = spot_images(spotter, args.inputs, out)
    else:
        clips = {str(p): decode(p, args.max_frames) for p in args.inputs}
        for mode in args.modes.split(","):
            with (args.out_dir / f"clipspot_{mode}.jsonl").open("w") as out:
                modes[mode] = spot_videos(spotter, MODES[mode], clips, out)
    reader = spotter.reader.name if spotter.reader else "none"
    print(json.dumps({"engine": "clipspot", "weights": spotter.checksum, "reader": reader,
                      "load_s": round(load_s, 2), "load_average": load_average(),
                      "peak_rss_mb": peak_rss_mb(), "modes": modes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
