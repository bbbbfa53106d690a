"""`clipspot serve`: run the gRPC service.

    clipspot serve                       # embedded: one process, 127.0.0.1:50051, in-process cache
    clipspot serve --host 0.0.0.0 --tls-cert server.pem --tls-key server.key \
        --token-file tokens.txt          # reachable from other machines: TLS + bearer tokens
    clipspot serve --redis-url redis://localhost:6379/0     # share prompt embeddings via Redis
    clipspot serve --ray                 # Ray Serve application, gRPC on port 9000

Embedded mode starts listening at once (health NOT_SERVING, calls UNAVAILABLE), pins
torch/OpenMP/OpenCV threads, loads the spotter once, then reports SERVING; it serves
TextSpotting, grpc.health.v1, reflection (v1 and v1alpha) and Prometheus metrics
(`--metrics-port`, 9464, /metrics) until SIGTERM or Ctrl-C, then drains: open streams
get their in-flight frames answered and their track-end events before the process exits.
Streams that do not say otherwise (`Sampling.detect_every` 0) get the server's keyframe mode:
adaptive, at most `--detect-every` frames apart (default 5), or `--every-frame`.
Security (docs/security.md): embedded mode listens on 127.0.0.1 unless `--host` says otherwise;
`--tls-cert/--tls-key` encrypt the port, `--tls-client-ca` requires client certificates, and
`--token-file` (or $CLIPSPOT_TOKEN_FILE) requires `authorization: Bearer <token>` on each call.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from dataclasses import replace

from pipeline.errors import ClipSpotError
from services.auth import read_tokens
from services.embedded_server import DEFAULT_PORT
from services.stream_types import SessionLimits
from services.tls import ServerTls

RAY_DEFAULT_PORT = 9000  # Ray Serve's gRPC convention
METRICS_DEFAULT_PORT = 9464  # the OpenTelemetry Prometheus exporter's port, a common default
DEFAULT_MESSAGE_MB = 64  # ServerConfig.max_message_bytes: raw 1080p RGB is 6.2 MB


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=None,
                        help=f"gRPC port (default {DEFAULT_PORT}; {RAY_DEFAULT_PORT} with --ray)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="embedded: address to bind (default 127.0.0.1, this machine only; "
                             "0.0.0.0 or [::]: every interface)")
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
    parser.add_argument("--keepalive-s", type=float, default=20.0, metavar="S",
                        help="embedded: ping each client every S seconds, so a connection "
                             "whose network went silent is found and its streams freed "
                             "(default 20; 0: off, gRPC then waits 2 hours)")
    parser.add_argument("--keepalive-timeout-s", type=float, default=10.0, metavar="S",
                        help="embedded: drop the connection when a ping is not answered "
                             "within S seconds (default 10)")
    parser.add_argument("--detect-every", type=int, default=5, metavar="K",
                        help="streams' default: at most K frames between keyframes, adaptive "
                             "(default 5)")
    parser.add_argument("--every-frame", action="store_true",
                        help="streams' default: detect and read every frame (slow, the "
                             "reference)")
    _add_security_arguments(parser)


def _add_security_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", default=None, metavar="FILE",
                        help="embedded: serve TLS with this PEM certificate (with --tls-key)")
    parser.add_argument("--tls-key", default=None, metavar="FILE",
                        help="embedded: the PEM private key of --tls-cert")
    parser.add_argument("--tls-client-ca", default=None, metavar="FILE",
                        help="embedded: require client certificates signed by this PEM CA "
                             "(mutual TLS)")
    parser.add_argument("--token-file", default=os.environ.get("CLIPSPOT_TOKEN_FILE"),
                        metavar="PATH",
                        help="accept only calls with 'authorization: Bearer <token>' "
                             "for a token in this file, one per line (default "
                             "$CLIPSPOT_TOKEN_FILE; none: no token needed)")
    parser.add_argument("--max-streams-per-client", type=int, default=0, metavar="N",
                        help="streams one client may hold open at once; more end with "
                             "RESOURCE_EXHAUSTED. A client is its token (with --token-file), "
                             "else its IP address (default 0: no limit; with --ray, per "
                             "StreamIngress replica)")
    parser.add_argument("--max-message-mb", type=int, default=DEFAULT_MESSAGE_MB, metavar="MB",
                        help="embedded: the largest gRPC message taken or sent, in MiB "
                             f"(default {DEFAULT_MESSAGE_MB}; a raw 1080p RGB frame is 6)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from pipeline.model.word_reader import check_reader_name

    check_reader_name(args.reader)  # an unknown name fails before anything starts
    if args.ray:
        _refuse_embedded_security(args)
        args.port = args.port or RAY_DEFAULT_PORT
        from services.ray_app import run_ray  # Ray is imported only in Ray mode

        return int(run_ray(args) or 0)
    args.port = DEFAULT_PORT if args.port is None else args.port
    return asyncio.run(_serve_embedded(args))


def _refuse_embedded_security(args: argparse.Namespace) -> None:
    # Refused rather than ignored: a deployment that believes it is protected must not run open.
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        raise ClipSpotError("serve --ray: Serve's gRPC proxy has no TLS; --tls-* apply to "
                            "embedded mode (on Kubernetes use the chart's TLS sidecar, "
                            "docs/security.md)")
    if args.max_message_mb != DEFAULT_MESSAGE_MB:
        raise ClipSpotError("serve --ray: Serve's gRPC proxy has no message size option; "
                            "--max-message-mb applies to embedded mode")
    if args.token_file:
        read_tokens(args.token_file)  # a missing or empty file: one line here, not in a replica


def server_tls(args: argparse.Namespace) -> ServerTls | None:
    """The TLS settings of the flags; checked (and files read) when the server starts."""
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca:
            raise ClipSpotError("serve: --tls-client-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ClipSpotError("serve: TLS needs both --tls-cert and --tls-key")
    return ServerTls(args.tls_cert, args.tls_key, args.tls_client_ca)


def client_limits(args: argparse.Namespace) -> SessionLimits:
    """The per-client limits of the flags (checked: a negative count is a typo)."""
    if args.max_streams_per_client < 0:
        raise ClipSpotError("serve: --max-streams-per-client must be >= 0 (0: no limit)")
    if not 1 <= args.max_message_mb <= 2047:  # gRPC's limits are signed 32-bit byte counts
        raise ClipSpotError(f"serve: --max-message-mb must be in 1..2047, got "
                            f"{args.max_message_mb}")
    return SessionLimits(max_streams_per_client=args.max_streams_per_client)


async def _serve_embedded(args: argparse.Namespace) -> int:
    # Threads are pinned before the model loads, so torch never starts a pool per core.
    from services.threads import pin_threads

    threads = pin_threads(args.threads)
    from pipeline.spotter import Spotter
    from pipeline.video_job import runner_config
    from services.embedded_server import EmbeddedServer, ServerConfig
    from services.engines import LocalEngine
    from services.prompt_cache import make_prompt_cache

    if args.detect_every < 1:
        raise ClipSpotError(f"serve: --detect-every must be >= 1, got {args.detect_every}")
    runner = runner_config(args.detect_every, every_frame=args.every_frame)
    if args.keepalive_s < 0 or args.keepalive_timeout_s <= 0:
        raise ClipSpotError("serve: --keepalive-s must be >= 0 (0: off) and "
                            "--keepalive-timeout-s > 0")
    config = ServerConfig(port=args.port, host=args.host, drain_grace_s=args.drain_grace,
                          runner=runner, metrics_port=args.metrics_port or None,
                          tls=server_tls(args), tokens=read_tokens(args.token_file)
                          if args.token_file else (), keepalive_s=args.keepalive_s,
                          keepalive_timeout_s=args.keepalive_timeout_s)
    config = replace(config, limits=client_limits(args),
                     max_message_bytes=args.max_message_mb * 1024 * 1024)
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
