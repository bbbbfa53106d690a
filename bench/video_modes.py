"""Video modes side by side: every frame vs fixed k vs adaptive (benchmark, not a test).

    .venv/bin/python -m bench.video_modes runs/clips_tune/*.mp4 --k 5
    .venv/bin/clipspot synth camera --ic15 ../shared/data/ic15_train --split report --out clips

Each clip's ground truth is the `.json` beside it (`clipspot synth camera` / `synth video`). The
clips are decoded once into memory, so the timings are the frame loop alone (model loaded, no
decoding, no JSON writing): frames/s = frames / wall seconds of `VideoRunner.run`. Modes run one
after the other on the same frames in one process, with the same weights and reader. Scores are
the means over clips of `clipspot eval`'s video protocol (MOTA, IDF1, track-level end-to-end).
Prints a Markdown table with the ms per frame spent detecting, reading, following motion and
tracking, and the CPU it ran on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import torch

from bench.common import cpu_model
from pipeline.data.video_gt import read_video_gt
from pipeline.eval.video_protocol import evaluate_video, mean_over_videos
from pipeline.runner import EVERY_FRAME, RunnerConfig, VideoRunner
from pipeline.spotter import Spotter
from pipeline.types import VideoFrame


def decode(path: Path) -> list[VideoFrame]:
    with av.open(str(path)) as container:
        return [
            VideoFrame(i, float(f.time), f.to_ndarray(format="rgb24"))
            for i, f in enumerate(container.decode(video=0))
        ]


def run_mode(spotter: Spotter, config: RunnerConfig, clips: list) -> dict:
    per_video, frames_total, wall = [], 0, 0.0
    spent = {"detect": 0.0, "read": 0.0, "motion": 0.0, "track": 0.0}
    for gt, frames in clips:
        runner = VideoRunner(spotter, config, source=gt.video)
        start = time.perf_counter()
        results = list(runner.run(frames))
        runner.finish()
        wall += time.perf_counter() - start
        frames_total += len(frames)
        for key, value in runner.seconds.items():
            spent[key] += value
        per_video.append(evaluate_video(gt, results))
    scores = mean_over_videos(per_video)
    return {
        "fps": frames_total / wall,
        "ms": {k: 1000 * v / frames_total for k, v in spent.items()},
        "mota": scores["tracking"]["mota"],
        "idf1": scores["tracking"]["idf1"],
        "track_e2e": scores["track_e2e"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+", type=Path, help=".mp4 files with a .json beside")
    parser.add_argument("--k", type=int, default=RunnerConfig.detect_every)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reader", default=None)
    parser.add_argument("--modes", default="every,fixed,adaptive")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    spotter = Spotter.load(reader=args.reader, threads=args.threads)
    clips = [(read_video_gt(p.with_suffix(".json")), decode(p)) for p in args.clips]
    modes = {
        "every": ("every frame", EVERY_FRAME),
        "fixed": (f"fixed k={args.k}", RunnerConfig(detect_every=args.k, adaptive=False)),
        "adaptive": (f"adaptive k<={args.k}", RunnerConfig(detect_every=args.k)),
    }
    print("| mode | MOTA | IDF1 | track E2E P / R / H | frames/s | ms/frame detect / read / "
          "motion / track |")
    print("|---|---:|---:|---|---:|---|")
    for key in args.modes.split(","):
        label, config = modes[key]
        r = run_mode(spotter, config, clips)
        e2e, ms = r["track_e2e"], r["ms"]
        print(f"| {label} | {r['mota']:.3f} | {r['idf1']:.3f} | {e2e['precision']:.3f} / "
              f"{e2e['recall']:.3f} / {e2e['hmean']:.3f} | {r['fps']:.1f} | {ms['detect']:.1f} / "
              f"{ms['read']:.1f} / {ms['motion']:.1f} / {ms['track']:.1f} |", flush=True)
    frames = sum(len(f) for _, f in clips)
    print(f"\n{len(clips)} clips, {frames} frames; CPU {cpu_model()}, {args.threads} threads; "
          f"reader {spotter.reader.name if spotter.reader else 'none'}; model {spotter.checksum}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
