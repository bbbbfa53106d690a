"""Measure a running ClipSpot service: N concurrent streams of one video, frames/s and latency.

    clipspot serve --port 50051 &
    python deploy/bench_streams.py VIDEO --server localhost:50051 --streams 4 [--detect-every K]
    python deploy/bench_streams.py VIDEO --streams 4 --realtime --drop-policy keep_latest

Each stream sends the video as MPEG-TS chunks through the ordinary client (credits respected),
as fast as the credits allow (throughput: a file) or, with --realtime, at the video's own rate
(latency: a live camera). A frame's latency is the time from sending the chunk that completed it
(the `seq` of its result) to receiving its result, so it includes queueing behind other streams
and the model; without --realtime it is mostly time spent queued behind the credit window.
Prints one JSON object: streams, frames, wall seconds, aggregate and per-stream frames/s,
p50/p99/max latency in ms, dropped frames, and whether every stream got every frame once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, without installing

from bench.common import cpu_model  # noqa: E402
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


def _one_stream(
    target: str, chunks: list[bytes], options: StreamOptions, period_s: float, out: dict
) -> None:
    timed = TimedChunks(chunks, period_s)
    latencies, frames, dropped = [], [], 0
    config = stream_config(options, pb.INPUT_KIND_MPEGTS, options.stream_id)
    with SpotClient(target) as client:
        start = time.perf_counter()
        for response in client.stream_responses(config, timed):
            if response.WhichOneof("message") != "result":
                continue
            result = response.result
            latencies.append(time.perf_counter() - timed.sent_at[result.seq])
            frames.append(result.frame)
            dropped += result.dropped
        out.update(wall=time.perf_counter() - start, latencies=latencies, frames=frames,
                   dropped=dropped)


def _duration_s(video: Path) -> float:
    frames = VideoReader(str(video))
    pts = [f.pts or 0.0 for f in frames]
    step = (pts[-1] - pts[0]) / max(1, len(pts) - 1)
    return pts[-1] - pts[0] + step


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
    args = parser.parse_args(argv)
    chunks = list(remux_to_mpegts(Path(args.video), chunk_size=args.chunk_bytes))
    period_s = _duration_s(Path(args.video)) / len(chunks) if args.realtime else 0.0
    outcomes: list[dict] = [{} for _ in range(args.streams)]
    threads = [
        threading.Thread(target=_one_stream, args=(
            args.server, chunks,
            StreamOptions(stream_id=f"bench-{i}", detect_every=args.detect_every,
                          drop_policy=args.drop_policy), period_s, outcomes[i]))
        for i in range(args.streams)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    expected = len(outcomes[0].get("frames", []))
    latencies = np.array([x for o in outcomes for x in o.get("latencies", [])]) * 1000.0
    total = sum(len(o.get("frames", [])) for o in outcomes)
    report = {
        "cpu": cpu_model(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "mode": "realtime" if args.realtime else "as fast as credits allow",
        "detect_every": args.detect_every,
        "drop_policy": args.drop_policy,
        "streams": args.streams,
        "frames_per_stream": expected,
        "frames_total": total,
        "wall_s": round(wall, 2),
        "fps_total": round(total / wall, 2),
        "fps_per_stream": [round(len(o["frames"]) / o["wall"], 2) for o in outcomes],
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
        "latency_ms_p99": round(float(np.percentile(latencies, 99)), 1),
        "latency_ms_max": round(float(latencies.max()), 1),
        "dropped": sum(o.get("dropped", 0) for o in outcomes),
        "answered_not_dropped_fps": round((total - sum(o.get("dropped", 0) for o in outcomes))
                                          / wall, 2),
        "every_frame_once": all(o["frames"] == list(range(expected)) for o in outcomes),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
