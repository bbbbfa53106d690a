"""Soak: N concurrent streams at real-time pace for a few minutes; server RSS, lost frames, p99.

    python bench/soak.py --streams 16 --minutes 3                # starts `clipspot serve` itself
    python bench/soak.py --streams 8 --minutes 1 --ray           # the Ray app (`serve --ray`)
    python bench/soak.py --server localhost:50051 --pid PID      # a server already running

Every stream sends the same synthetic video (320x192 by default, `--fps` frames per second,
`--minutes` long) as MPEG-TS chunks at the video's own rate, through the ordinary client
(credits respected), all streams at once: `bench/streams.py`'s live mode, for longer.
The server's RSS (the sum over its process tree: Ray's raylet and replicas are its children)
is sampled every second. A frame is lost when the stream does not get its FrameResult; frames
the drop policy skipped are still answered (flagged dropped) and are counted apart. Latency is
from sending the chunk that completed a frame to receiving its result. Prints one JSON summary
(and writes it to `--json`); docs/reliability.md records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, without installing

from bench.common import descendants  # noqa: E402
from bench.streams import RssSampler, run_streams  # noqa: E402
from pipeline.data.synth_video import VideoConfig, write_video  # noqa: E402
from pipeline.decode import remux_to_mpegts  # noqa: E402
from services.client import StreamOptions  # noqa: E402


def soak_video(folder: Path, seconds: float, fps: float, width: int = 320,
               height: int = 192) -> Path:
    """A synthetic video (tickers and signs: words appear, move and leave all the time)."""
    path = folder / f"soak_{width}x{height}_{fps:g}fps_{seconds:g}s.mp4"
    if not path.is_file():
        write_video(VideoConfig(width=width, height=height, fps=fps, seconds=seconds, seed=11,
                                scenarios=("ticker", "signs")), path)
    return path


def soak(target: str, pid: int, video: Path, streams: int, options: StreamOptions,
         seconds: float, chunk_bytes: int = 4096, warmup_s: float = 20.0) -> dict:
    """Run the streams against `target` (served by process `pid`) and summarise."""
    chunks = list(remux_to_mpegts(video, chunk_size=chunk_bytes))
    period_s = seconds / len(chunks)  # the video's own rate: a live camera
    every = [replace(options, stream_id=f"soak-{i}") for i in range(streams)]
    with RssSampler(lambda: descendants(pid)) as rss:
        time.sleep(1.0)  # the first sample: before any stream
        outcomes, wall = run_streams(target, chunks, every, period_s)
        time.sleep(2.0)  # after: every stream closed
    return summarise(outcomes, rss.samples, wall, warmup_s + 1.0, options, streams)


def summarise(outcomes: list[dict], samples: list[tuple[float, float]], wall: float,
              warmup_at: float, options: StreamOptions, streams: int) -> dict:
    expected = max(len(o.get("frames", [])) for o in outcomes)
    answered = sum(len(o.get("frames", [])) for o in outcomes)
    latencies = np.array([x for o in outcomes for x in o.get("latencies", [])] or [0.0]) * 1e3
    mib = samples
    warm = [r for t, r in mib if t >= warmup_at] or [mib[-1][1]]
    return {
        "streams": streams,
        "minutes": round(wall / 60, 2),
        "frames_per_stream": expected,
        "frames_sent": expected * streams,
        "frames_answered": answered,
        "frames_lost": expected * streams - answered,
        "every_frame_once_in_order": all(o.get("frames") == list(range(expected))
                                         for o in outcomes),
        "dropped_by_policy": sum(o.get("dropped", 0) for o in outcomes),
        "drop_policy": options.drop_policy,
        "detect_every": options.detect_every,
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
        "latency_ms_p99": round(float(np.percentile(latencies, 99)), 1),
        "latency_ms_max": round(float(latencies.max()), 1),
        "rss_mib_before": round(mib[0][1], 1),
        "rss_mib_after_warmup": round(warm[0], 1),
        "rss_mib_peak_after_warmup": round(max(warm), 1),
        "rss_mib_end": round(mib[-1][1], 1),
        "rss_growth_mib_after_warmup": round(max(warm) - warm[0], 1),
        "rss_samples": len(samples),
        "warmup_s": round(warmup_at - 1.0, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "errors": [o["error"] for o in outcomes if "error" in o],
    }


def _start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = args.port
    command = [sys.executable, "-m", "services.cli.main", "serve", "--port", str(port),
               "--max-side", str(args.max_side)]
    command += ["--ray"] if args.ray else ["--metrics-port", "0"]
    server = subprocess.Popen(command, cwd=ROOT)
    target = f"127.0.0.1:{port}"
    _wait_serving(target, server, timeout_s=600 if args.ray else 180)
    return server, target


def _wait_serving(target: str, server: subprocess.Popen, timeout_s: float) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(1.0)
    raise SystemExit(f"soak: the server on {target} did not become SERVING")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--fps", type=float, default=25.0, help="the video's (= sending) rate")
    parser.add_argument("--size", default="320x192", help="the video's WIDTHxHEIGHT")
    parser.add_argument("--drop-policy", default="keep_latest")
    parser.add_argument("--detect-every", type=int, default=0, help="0: the server's default")
    parser.add_argument("--chunk-bytes", type=int, default=4096)
    parser.add_argument("--warmup-s", type=float, default=30.0)
    parser.add_argument("--server", default=None, help="HOST:PORT of a running server "
                        "(with --pid); default: start `clipspot serve` here")
    parser.add_argument("--pid", type=int, default=None, help="the running server's pid")
    parser.add_argument("--port", type=int, default=50151, help="port of the started server")
    parser.add_argument("--max-side", type=int, default=320, help="of the started server")
    parser.add_argument("--ray", action="store_true", help="start `clipspot serve --ray`")
    parser.add_argument("--json", default=None, help="also write the summary here")
    args = parser.parse_args(argv)
    width, height = (int(x) for x in args.size.split("x"))
    seconds = args.minutes * 60
    video = soak_video(Path(tempfile.gettempdir()), seconds, args.fps, width, height)
    server = None
    if args.server is None:
        server, target = _start_server(args)
        pid = server.pid
    else:
        target, pid = args.server, args.pid or 0
    options = StreamOptions(drop_policy=args.drop_policy, detect_every=args.detect_every)
    try:
        report = soak(target, pid, video, args.streams, options, seconds, args.chunk_bytes,
                      args.warmup_s)
    finally:
        if server is not None:
            server.terminate()
            server.wait(120)
    report.update(mode="ray" if args.ray else "embedded", video=f"{args.size} {args.fps:g} fps")
    print(json.dumps(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0 if report["frames_lost"] == 0 and not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
