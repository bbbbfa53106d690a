"""Speed ratio in one run: ClipSpot's `Spotter.spot` vs RapidOCR 3.10 on one 640x360 frame.

    OMP_NUM_THREADS=2 .venv/bin/python deploy/bench_peer_speed.py

RapidOCR 3.10.0 (PP-OCRv6 small detection + orientation classifier + PP-OCRv6 recognition,
onnxruntime, 2 intra-op threads) is installed with ClipSpot (its reader model comes from that
wheel), so both run in one process, alternating, three rounds of 15 timed calls (median each).
Still images, every word read. A benchmark, not a test; issue 13's harness will supersede it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, without installing

from deploy.bench_speed import cpu_model, read_frame  # noqa: E402
from pipeline.spotter import Spotter  # noqa: E402

VIDEO = ROOT.parent / "shared" / "data" / "video" / "street_banner_960x506.mp4"


def median_ms(call: Callable[[], object], runs: int = 15, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> int:
    from rapidocr import RapidOCR

    torch.set_num_threads(2)
    frame = read_frame(str(VIDEO), 30)
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    spotter = Spotter.load(threads=2)
    peer = RapidOCR(
        params={"EngineConfig.onnxruntime.intra_op_num_threads": 2, "Global.log_level": "error"}
    )
    for round_ in range(3):
        ours = median_ms(lambda: spotter.spot([frame]))
        theirs = median_ms(lambda: peer(bgr))
        print(f"round {round_}: ClipSpot {ours:.1f} ms, RapidOCR 3.10 {theirs:.1f} ms, "
              f"ratio {theirs / ours:.2f}", flush=True)
    print(f"CPU {cpu_model()}, 2 threads; model {spotter.checksum} (reader {spotter.reader.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
