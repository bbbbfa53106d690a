"""Ray Serve against the embedded server, measured in one run on this machine.

    .venv/bin/python -m bench.ray_vs_embedded                # the demo clip, both modes
    .venv/bin/python -m bench.ray_vs_embedded --seconds 3 --modes every-frame

Both servers run side by side, each idle while the other is measured, with the same weights,
the same torch threads and the same batch size:
  - embedded: `clipspot serve` as a subprocess (one process: streams, decoding, the model);
  - Ray: a local cluster (`ray.init(num_cpus=2)`) with Serve's gRPC proxy, one StreamIngress
    replica (0.5 CPU: the streams' decoding, keyframes, motion following, tracking) and one
    TextSpotter replica (1 CPU reserved; torch runs `--threads` threads in it, as embedded).
The clip is the `make demo` one (`clipspot synth video --seconds 6 --seed 0`: 640x360, 25 fps,
150 frames). For each mode (every frame: detect_every 1; default: the servers' adaptive
keyframes, at most 5 frames apart) `--streams` clients send it at once as MPEG-TS chunks, as
fast as credits allow, through the ordinary client. Per run: frames/s of all streams together,
p50/p99 latency of a frame (from sending the chunk that completed it to its result: mostly
queueing, since a file is sent faster than it is spotted), whether every stream got every frame
once in order, and whether the words equal the other server's. Modes alternate which server goes
first, so a drift in background load does not favour one. Prints a Markdown table (with the CPU
model and the load average before and after) and one JSON line per run. (Files as fast as
credits allow; `clipspot bench` measures live 25 fps streams: bench/service_load.py.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from bench.common import cpu_model
from bench.service_load import start_embedded, start_ray, stop_embedded, stop_ray, warm_up
from bench.streams import run_streams, summary
from pipeline.decode import remux_to_mpegts
from services.client import StreamOptions

MODES = {"every-frame": 1, "default": 0}  # StreamOptions.detect_every


def measure(target: str, chunks: list[bytes], streams: int, detect_every: int) -> dict:
    options = [StreamOptions(stream_id=f"bench-{i}", detect_every=detect_every)
               for i in range(streams)]
    outcomes, wall = run_streams(target, chunks, options)
    result = summary(outcomes, wall)
    return {
        "frames": result["frames_total"],
        "wall_s": wall,
        "fps": result["fps_total"],
        "p50_ms": result["latency_ms_p50"],
        "p99_ms": result["latency_ms_p99"],
        "every_frame_once": result["every_frame_once"],
        "errors": result["errors"],
        "words": [o["words"] for o in outcomes],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=None, help="a clip (default: synthesize the demo)")
    parser.add_argument("--seconds", type=float, default=6.0, help="demo clip length (6)")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--modes", default="every-frame,default")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both servers")
    parser.add_argument("--max-batch", type=int, default=4)
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {unknown}; choose from {sorted(MODES)}")

    import cv2

    from pipeline.data.synth_video import VideoConfig, write_video
    from pipeline.decode import VideoReader

    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    video = Path(args.video) if args.video else work / "synth_0.mp4"
    if not args.video:
        write_video(VideoConfig(seconds=args.seconds, seed=0), video)
    chunks = list(remux_to_mpegts(video, chunk_size=64 * 1024))
    first = next(iter(VideoReader(str(video)))).image
    png = cv2.imencode(".png", cv2.cvtColor(first, cv2.COLOR_RGB2BGR))[1].tobytes()

    load_before = os.getloadavg()
    embedded, embedded_target = start_embedded(args.threads, args.max_batch)
    try:
        ray_target = start_ray(args.threads, args.max_batch)
        targets = {"embedded": embedded_target, "ray": ray_target}
        for target in targets.values():
            warm_up(target, png)
        runs: dict[tuple[str, str], dict] = {}
        for index, mode in enumerate(modes):
            order = ["embedded", "ray"] if index % 2 == 0 else ["ray", "embedded"]
            for server in order:
                runs[(mode, server)] = measure(targets[server], chunks, args.streams,
                                               MODES[mode])
                run = {k: v for k, v in runs[(mode, server)].items() if k != "words"}
                print(json.dumps({"mode": mode, "server": server, **run}), flush=True)
    finally:
        stop_embedded(embedded)
        stop_ray()
    load_after = os.getloadavg()

    frames = len(runs[(modes[0], "embedded")]["words"][0])
    print()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; load average (1/5/15 min) "
          f"before {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, after "
          f"{load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}")
    print(f"{args.streams} concurrent streams x {frames} frames ({video.name}), "
          f"{args.threads} torch threads, batch <= {args.max_batch}")
    print()
    print("| mode | server | frames/s (all streams) | p50 latency | p99 latency | every frame "
          "once | Ray / embedded |")
    print("|---|---|---|---|---|---|---|")
    for mode in modes:
        base = runs[(mode, "embedded")]
        for server in ("embedded", "ray"):
            run = runs[(mode, server)]
            ratio = f"{run['fps'] / base['fps']:.2f}" if server == "ray" else ""
            once = "yes" if run["every_frame_once"] and not run["errors"] else "NO"
            print(f"| {mode} | {server} | {run['fps']:.2f} | {run['p50_ms']:.0f} ms | "
                  f"{run['p99_ms']:.0f} ms | {once} | {ratio} |")
    print()
    for mode in modes:
        same = runs[(mode, "ray")]["words"] == runs[(mode, "embedded")]["words"]
        print(f"{mode}: Ray's words per frame {'equal' if same else 'DIFFER FROM'} the "
              f"embedded server's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
