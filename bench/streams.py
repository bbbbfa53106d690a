"""Concurrent live streams against a running ClipSpot service: the one stream driver of
`bench/service_load.py`, `bench/ray_vs_embedded.py` and `bench/soak.py`.

    clipspot serve --port 50051 &
    python bench/streams.py VIDEO --server localhost:50051 --streams 4 [--detect-every K]
    python bench/streams.py VIDEO --streams 4 --realtime --drop-policy keep_latest

    outcomes, wall_s = run_streams(target, chunks, [StreamOptions(...), ...], period_s)

Each stream sends the video as MPEG-TS chunks through the ordinary client (credits respected),
as fast as the credits allow (period 0: a file) or one chunk every `period_s` (a live camera).
A frame's latency is the time from sending the chunk that completed it (the `seq` of its
result) to receiving its result, so it includes queueing behind other streams and the model.
`RssSampler` records a process tree's resident memory meanwhile.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, without installing

from bench.common import descendants, load_average, machine, rss_mb  # noqa: E402
from pipeline.decode import VideoReader, remux_to_mpegts  # noqa: E402
from services.client import SpotClient, StreamOptions, stream_config  # noqa: E402
from services.rpc.clipspot.v1 import spotting_pb2 as pb  # noqa: E402


class TimedChunks:
    """The video's chunks, stamping the send time of each seq (taken when gRPC pulls it).

    `period_s` > 0 paces them like a live camera: chunk i is not sent before i * period_s.
    """

    def __init__(self, chunks: list[bytes], period_s: float = 0.0) -> None:
        self.chunks = chunks
        self.period_s = period_s
        self.sent_at: dict[int, float] = {}

    def __iter__(self) -> Iterator[pb.StreamRequest]:
        start = time.perf_counter()
        for seq, chunk in enumerate(self.chunks):
            delay = start + seq * self.period_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.sent_at[seq] = time.perf_counter()
            yield pb.StreamRequest(chunk=pb.Chunk(seq=seq, data=chunk))


def run_stream(target: str, chunks: list[bytes], options: StreamOptions,
               period_s: float = 0.0) -> dict[str, Any]:
    """One stream, never raising (a failure is reported under "error"; its missing frames
    count as lost). Latencies in seconds: of every answer, and of the answers not dropped."""
    timed = TimedChunks(chunks, period_s)
    config = stream_config(options, pb.INPUT_KIND_MPEGTS, options.stream_id)
    out: dict[str, Any] = {"frames": [], "latencies": [], "spotted_latencies": [],
                           "dropped": 0, "words": []}
    start = time.perf_counter()
    try:
        with SpotClient(target) as client:
            for response in client.stream_responses(config, timed):
                if response.WhichOneof("message") != "result":
                    continue
                result = response.result
                latency = time.perf_counter() - timed.sent_at[result.seq]
                out["frames"].append(result.frame)
                out["latencies"].append(latency)
                out["words"].append(sorted(i.text for i in result.instances))
                if result.dropped:
                    out["dropped"] += 1
                else:
                    out["spotted_latencies"].append(latency)
    except Exception as err:  # reported, not raised from a thread
        out["error"] = f"{type(err).__name__}: {err}"
    out["wall"] = time.perf_counter() - start
    return out


def run_streams(target: str, chunks: list[bytes], options: list[StreamOptions],
                period_s: float = 0.0, limit_s: float | None = None
                ) -> tuple[list[dict[str, Any]], float]:
    """All streams at once (one per options), each on its own thread; (outcomes, wall s).
    With `limit_s`, streams still open then are abandoned (their frames count as lost)."""
    outcomes: list[dict[str, Any]] = [{} for _ in options]

    def drive(index: int) -> None:
        outcomes[index].update(run_stream(target, chunks, options[index], period_s))

    threads = [threading.Thread(target=drive, args=(i,), daemon=True)
               for i in range(len(options))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(None if limit_s is None
                    else max(0.0, limit_s - (time.perf_counter() - start)))
    return outcomes, time.perf_counter() - start


class RssSampler:
    """(seconds since start, MiB) of the summed RSS of `pids()` every `period_s`, in a thread,
    while entered: `with RssSampler(lambda: descendants(server.pid)) as rss: ...`."""

    def __init__(self, pids: Callable[[], list[int]], period_s: float = 1.0) -> None:
        self.pids = pids
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        start = time.perf_counter()
        while True:
            total = sum(rss_mb(pid) for pid in self.pids())
            self.samples.append((round(time.perf_counter() - start, 2), round(total, 1)))
            if self._stop.wait(self.period_s):
                return


def video_seconds(video: Path) -> float:
    pts = [f.pts or 0.0 for f in VideoReader(str(video))]
    step = (pts[-1] - pts[0]) / max(1, len(pts) - 1)
    return pts[-1] - pts[0] + step


def summary(outcomes: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    """Aggregate frames/s, latency percentiles (ms) and frame accounting of `run_streams`."""
    expected = max(len(o["frames"]) for o in outcomes)
    total = sum(len(o["frames"]) for o in outcomes)
    dropped = sum(o["dropped"] for o in outcomes)
    latencies = np.array([x for o in outcomes for x in o["latencies"]] or [0.0]) * 1000.0
    return {
        "streams": len(outcomes),
        "frames_per_stream": expected,
        "frames_total": total,
        "wall_s": round(wall, 2),
        "fps_total": round(total / wall, 2),
        "fps_spotted": round((total - dropped) / wall, 2),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
        "latency_ms_p99": round(float(np.percentile(latencies, 99)), 1),
        "latency_ms_max": round(float(latencies.max()), 1),
        "dropped": dropped,
        "every_frame_once": all(o["frames"] == list(range(expected)) for o in outcomes),
        "errors": [o["error"] for o in outcomes if "error" in o],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("--server", default="localhost:50051")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--detect-every", type=int, default=0,
                        help="0: the server's default (adaptive); 1: every frame")
    parser.add_argument("--drop-policy", default="none")
    parser.add_argument("--chunk-bytes", type=int, default=64 * 1024)
    parser.add_argument("--realtime", action="store_true",
                        help="send at the video's own rate (a live camera), not as fast as "
                             "credits allow (a file); latency is meaningful only then")
    parser.add_argument("--pid", type=int, default=None,
                        help="the server's pid: also report its process tree's peak RSS")
    args = parser.parse_args(argv)
    chunks = list(remux_to_mpegts(Path(args.video), chunk_size=args.chunk_bytes))
    period_s = video_seconds(Path(args.video)) / len(chunks) if args.realtime else 0.0
    base = StreamOptions(detect_every=args.detect_every, drop_policy=args.drop_policy)
    options = [replace(base, stream_id=f"bench-{i}") for i in range(args.streams)]
    pids = (lambda: descendants(args.pid)) if args.pid else list
    with RssSampler(pids) as rss:
        outcomes, wall = run_streams(args.server, chunks, options, period_s)
    report = {"machine": machine(), "load_average": load_average(),
              "mode": "realtime" if args.realtime else "as fast as credits allow",
              "detect_every": args.detect_every, "drop_policy": args.drop_policy,
              **summary(outcomes, wall)}
    if args.pid:
        report["server_peak_rss_mib"] = max(mib for _, mib in rss.samples)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
