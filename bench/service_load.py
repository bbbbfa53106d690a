"""Service load: 1, 4 and 16 live streams against the embedded server and the Ray Serve app.

Both servers run side by side on loopback (each idle while the other is measured; the order
alternates per level), with the same weights, torch threads and batch size:
  - embedded: `clipspot serve` as a subprocess (one process: streams, decoding, the model);
  - Ray: a local cluster (`ray.init(num_cpus=2)`) with Serve's gRPC proxy, one StreamIngress
    replica and one TextSpotter replica (as deploy/serve.yaml, sized for 2 cores).
Each stream is a real-time 25 fps source: the demo clip's MPEG-TS chunks sent at the clip's own
rate through the ordinary client (credits respected), drop policy `keep_latest`, the servers'
default adaptive keyframes. Per level: frames/s spotted by all streams together (frames the
policy skipped are answered, flagged `dropped`, and not counted), latency p50/p99 from sending
the chunk that completed a frame to its result, frames dropped by policy, frames lost (never
answered: must be 0), and the server's RSS over time. Every run is bounded in time.

"Spotted" counts every answer not dropped, keyframes and the cheap motion-followed frames
between them alike, so it is not the model's work: keyframes/s (the servers' own
`clipspot_keyframes_total` counter, scraped from each server's metrics port before and after a
level) is. Under `keep_latest` overload the two move apart: a stream that skips frames cannot
follow motion across the gap, so more of the frames it does take become keyframes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, descendants, log, percentiles, scrape_counters
from bench.streams import RssSampler, run_streams
from pipeline.decode import VideoReader, remux_to_mpegts
from services.client import SpotClient, StreamOptions


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_embedded(threads: int, max_batch: int, metrics_port: int = 0
                   ) -> tuple[subprocess.Popen, str]:
    """`clipspot serve` as a subprocess; `metrics_port` 0 serves no metrics."""
    port = free_port()
    command = [sys.executable, "-m", "services.cli.main", "serve", "--port", str(port),
               "--threads", str(threads), "--max-batch", str(max_batch),
               "--metrics-port", str(metrics_port)]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, f"127.0.0.1:{port}"


def stop_embedded(process: subprocess.Popen) -> None:
    """SIGTERM (the server drains), then kill it if it has not exited within a minute."""
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def start_ray(threads: int, max_batch: int, metrics_port: int | None = None) -> str:
    """A local Ray cluster and the Serve app; `metrics_port`: Ray's metrics agent there,
    exporting every second (its default is 10 s)."""
    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions

    from services.ray_app import APP_NAME, GRPC_SERVICERS, ROUTE_PREFIX, build_app

    metrics = {} if metrics_port is None else {
        "_metrics_export_port": metrics_port,
        "_system_config": {"metrics_report_interval_ms": 1000}}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, **metrics)
    port = free_port()
    serve.start(grpc_options=gRPCOptions(port=port, grpc_servicer_functions=GRPC_SERVICERS))
    serve.run(build_app({"spotter_replicas": 1, "spotter_cpus": 1, "ingress_cpus": 0.5,
                         "torch_threads": threads, "max_batch_size": max_batch}),
              name=APP_NAME, route_prefix=ROUTE_PREFIX)
    return f"127.0.0.1:{port}"


def stop_ray() -> None:
    try:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    except Exception:  # Ray may not have started; nothing to stop then
        pass


def warm_up(target: str, png: bytes) -> None:
    with SpotClient(target) as client:
        client.wait_ready(300)
        for _ in range(2):  # the first calls pay torch's and the reader's lazy set-up
            client.spot_image(png)


def keyframes_total(metrics_port: int, prefix: str, quiet_s: float) -> float:
    """The server's `clipspot_keyframes_total`, summed over replicas, once it has not moved for
    `quiet_s` (Ray's agent exports each second; the embedded server's count is current)."""
    name = f"{prefix}clipspot_keyframes_total"
    last = scrape_counters(metrics_port).get(name, 0.0)
    deadline = time.monotonic() + 30
    while quiet_s and time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = scrape_counters(metrics_port).get(name, 0.0)
        if now == last:
            break
        last = now
    return last


def measure(target: str, chunks: list[bytes], period_s: float, streams: int, expected: int,
            pids: Any, limit_s: float, keyframes: Callable[[], float]) -> dict[str, Any]:
    options = [StreamOptions(stream_id=f"load-{i}", drop_policy="keep_latest")
               for i in range(streams)]
    keyframes_before = keyframes()
    with RssSampler(pids, period_s=0.5) as sampler:
        outcomes, wall = run_streams(target, chunks, options, period_s, limit_s)
    detected = keyframes() - keyframes_before
    answered = sum(len(set(o.get("frames", ()))) for o in outcomes)
    dropped = sum(o.get("dropped", 0) for o in outcomes)
    latencies = [1000 * x for o in outcomes for x in o.get("spotted_latencies", [])]
    return {"streams": streams, "wall_s": round(wall, 2),
            "fps_spotted": round((answered - dropped) / wall, 2),
            "keyframes": int(detected), "keyframes_per_s": round(detected / wall, 2),
            **percentiles(latencies), "dropped": dropped,
            "lost": streams * expected - answered,
            "errors": [o["error"] for o in outcomes if "error" in o],
            "rss_mb": sampler.samples, "peak_rss_mb": max(s for _, s in sampler.samples)}


def run(out: Path, seconds: float, levels: tuple[int, ...] = (1, 4, 16), threads: int = 2,
        max_batch: int = 4, with_ray: bool = True) -> dict[str, Any]:
    import cv2

    from pipeline.data.synth_video import VideoConfig, write_video

    out.mkdir(parents=True, exist_ok=True)
    video = out / f"load_{seconds:g}s.mp4"
    if not video.exists():
        write_video(VideoConfig(seconds=seconds, seed=0), video)
    frames = list(VideoReader(str(video)))
    chunks = list(remux_to_mpegts(video, chunk_size=16 * 1024))
    period_s = seconds / len(chunks)  # chunks at the clip's own rate: a live 25 fps camera
    png = cv2.imencode(".png", cv2.cvtColor(frames[0].image, cv2.COLOR_RGB2BGR))[1].tobytes()
    limit_s = 3 * seconds + 120  # bounded: a stuck stream ends the level, its frames count lost
    embedded_metrics, ray_metrics = free_port(), free_port()
    embedded, embedded_target = start_embedded(threads, max_batch, embedded_metrics)
    servers = {"embedded": (embedded_target, lambda: descendants(embedded.pid),
                            lambda: keyframes_total(embedded_metrics, "", 0))}
    try:
        if with_ray:
            ray_target = start_ray(threads, max_batch, ray_metrics)
            mine = os.getpid()
            servers["ray"] = (ray_target, lambda: [
                p for p in descendants(mine) if p != mine and p not in descendants(embedded.pid)],
                lambda: keyframes_total(ray_metrics, "ray_", 2.5))
        for target, *_ in servers.values():
            warm_up(target, png)
        results: dict[str, list] = {name: [] for name in servers}
        for index, streams in enumerate(levels):
            order = list(servers) if index % 2 == 0 else list(servers)[::-1]
            for name in order:
                log(f"service: {name}, {streams} live streams of {seconds:g} s")
                target, pids, keyframes = servers[name]
                results[name].append(measure(target, chunks, period_s, streams, len(frames),
                                             pids, limit_s, keyframes))
    finally:
        stop_embedded(embedded)
        if with_ray:
            stop_ray()
    ratio, keyframe_ratio = {}, {}
    if "ray" in results:
        pairs = list(zip(results["embedded"], results["ray"], strict=True))
        ratio = {str(e["streams"]): round(r["fps_spotted"] / e["fps_spotted"], 2)
                 for e, r in pairs if e["fps_spotted"]}
        keyframe_ratio = {str(e["streams"]): round(r["keyframes_per_s"] / e["keyframes_per_s"], 2)
                          for e, r in pairs if e["keyframes_per_s"]}
    return {"clip": video.name, "frames_per_stream": len(frames), "fps_source": 25,
            "drop_policy": "keep_latest", "threads": threads, "max_batch": max_batch,
            "servers": results, "ray_over_embedded_fps": ratio,
            "ray_over_embedded_keyframes": keyframe_ratio,
            "lost_total": int(np.sum([r["lost"] for rs in results.values() for r in rs]))}
