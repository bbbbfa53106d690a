"""Pin the math libraries' thread pools before the model loads.

torch, OpenMP (via torch and OpenCV) and OpenCV each default to one thread per core. In one
server process that already runs a decoder thread per stream and a model thread, three pools of
N threads on an N-core machine fight for the same cores; with several Ray replicas on one node
it gets worse (each replica would start N of each). So the service decides explicitly: the model
gets `torch_threads` (default: the cores this process may use, divided among `replicas`), OpenCV
one (its work here is small resizes and colour conversions), inter-op parallelism one.
The environment variables must be set before torch is first imported to take effect on OpenMP;
`torch.set_num_threads` covers the case where it already was.
"""

from __future__ import annotations

import contextlib
import os


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pin_threads(torch_threads: int | None = None, replicas: int = 1) -> int:
    """Pin torch/OpenMP/MKL/OpenCV threads for this process; returns torch's thread count."""
    threads = torch_threads or max(1, available_cores() // max(1, replicas))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import cv2
    import torch

    torch.set_num_threads(threads)
    # Allowed once per process, before any parallel work; a second call raises.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    cv2.setNumThreads(1)
    return threads
