"""`clipspot serve`: run the gRPC service.

    clipspot serve                       # embedded: one process, port 50051, in-process cache
    clipspot serve --redis-url redis://localhost:6379/0     # share prompt embeddings via Redis
    clipspot serve --ray                 # Ray Serve application, gRPC on port 9000

Embedded mode starts listening at once (health NOT_SERVING, calls UNAVAILABLE), pins
torch/OpenMP/OpenCV threads, loads the spotter once, then reports SERVING; it serves
TextSpotting, grpc.health.v1, reflection (v1 and v1alpha) and Prometheus metrics
(`--metrics-port`, 9464, /metrics) until SIGTERM or Ctrl-C, then drains: open streams
get their in-flight frames answered and their track-end events before the process exits.
Streams that do not say otherwise (`Sampling.detect_every` 0) get the server's keyframe mode:
adaptive, at most `--detect-every` frames apart (default 5), or `--every-frame`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from pipeline.errors import ClipSpotError
from services.embedded_server import DEFAULT_PORT

RAY_DEFAULT_PORT = 9000  # Ray Serve's gRPC convention
METRICS_DEFAULT_PORT = 9464  # the OpenTelemetry Prometheus exporter's port, a common default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=None,
                        help=f"gRPC port (default {DEFAULT_PORT}; {RAY_DEFAULT_PORT} with --ray)")
    parser.add_argument("--host", default="[::]", help="address to bind (default all)")
    parser.add_argument("--weights", default=None,
                        help="ClipSpot checkpoint (default: the shipped weights)")
    parser.add_argument("--reader", default=os.environ.get("CLIPSPOT_READER"),
                        help="word reader: clipspot-ctc or ppocrv6 (default $CLIPSPOT_READER, "
                             "else the weights' calibrated default)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--max-side", type=int, default=None,
                        help="never give the network an image longer than N pixels "
                             "(default 1440, as `clipspot spot`)")
    parser.add_argument("--metrics-port", type=int, default=METRICS_DEFAULT_PORT,
                        help=f"embedded: Prometheus /metrics port (default "
                             f"{METRICS_DEFAULT_PORT}; 0: off). Ray mode exports through Ray's "
                             "metrics agent instead")
    parser.add_argument("--ray", action="store_true",
                        help="run as a Ray Serve application instead of one process")
    parser.add_argument("--redis-url", default=os.environ.get("CLIPSPOT_REDIS_URL"),
                        help="Redis for the shared prompt-embedding cache "
                             "(default $CLIPSPOT_REDIS_URL; none: in-process cache)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the cores this process may use)")
    parser.add_argument("--max-batch", type=int, default=4,
                        help="frames from concurrent streams spotted in one call (default 4)")
    parser.add_argument("--drain-grace", type=float, default=30.0,
                        help="seconds open streams get to finish on SIGTERM (default 30)")
    parser.add_argument("--detect-every", type=int, default=5, metavar="K",
                        help="streams' default: at most K frames between keyframes, adaptive "
                             "(default 5)")
    parser.add_argument("--every-frame", action="store_true",
                        help="streams' default: detect and read every frame (slow, the "
                             "reference)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from pipeline.model.word_reader import check_reader_name

    check_reader_name(args.reader)  # an unknown name fails before anything starts
    if args.ray:
        args.port = args.port or RAY_DEFAULT_PORT
        from services.ray_app import run_ray  # Ray is imported only in Ray mode

        return int(run_ray(args) or 0)
    args.port = DEFAULT_PORT if args.port is None else args.port
    return asyncio.run(_serve_embedded(args))


async def _serve_embedded(args: argparse.Namespace) -> int:
    # Threads are pinned before the model loads, so torch never starts a pool per core.
    from services.threads import pin_threads

    threads = pin_threads(args.threads)
    from pipeline.runner import EVERY_FRAME, RunnerConfig
    from pipeline.spotter import Spotter
    from services.embedded_server import EmbeddedServer, ServerConfig
    from services.engines import LocalEngine
    from services.prompt_cache import make_prompt_cache

    if args.detect_every < 1:
        raise ClipSpotError(f"serve: --detect-every must be >= 1, got {args.detect_every}")
    runner = EVERY_FRAME if args.every_frame else RunnerConfig(detect_every=args.detect_every)
    config = ServerConfig(port=args.port, host=args.host, drain_grace_s=args.drain_grace,
                          runner=runner, metrics_port=args.metrics_port or None)
    # Listen first, so probes see NOT_SERVING (not a refused connection) while the model loads.
    server = EmbeddedServer(None, config)
    port = await server.start()
    server.install_signal_handlers()  # a stop requested while loading is served right after
    try:
        spotter = await asyncio.to_thread(
            Spotter.load, args.weights, args.device, args.max_side,
            reader=args.reader, threads=threads,
        )
        cache = make_prompt_cache(args.redis_url, spotter.embed_dim)
        await server.set_engine(LocalEngine(spotter, cache, max_batch=args.max_batch))
    except BaseException:
        await server.stop()  # e.g. missing weights: close the listener, report the error
        raise
    cache_name = "Redis" if args.redis_url else "in-process"
    logging.getLogger("clipspot.serve").info(
        "clipspot serve: serving on port %d (model %s: weights %s, reader %s; %s, "
        "%d torch threads, %s prompt cache)",
        port, spotter.checksum, spotter.weights_checksum,
        spotter.reader.identity if spotter.reader else "none", args.device, threads, cache_name,
    )
    await server.wait()
    return 0
