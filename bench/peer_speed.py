"""Speed ratio in one run: ClipSpot's `Spotter.spot` vs RapidOCR 3.10 on one 640x360 frame.

    OMP_NUM_THREADS=2 .venv/bin/python -m bench.peer_speed

RapidOCR 3.10.0 (PP-OCRv6 small detection + orientation classifier + PP-OCRv6 recognition,
onnxruntime, 2 intra-op threads) is installed with ClipSpot (its reader model comes from that
wheel), so both run in one process, alternating, three rounds of 15 timed calls (median each).
Still images, every word read. A benchmark, not a test; `clipspot bench` measures the peers
in their own environment, this is the one in-process A/B.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np
import torch

from bench.common import cpu_model
from bench.model_speed import read_frame
from pipeline.spotter import Spotter


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
    frame = cv2.resize(read_frame(30), (640, 360), interpolation=cv2.INTER_AREA)
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
