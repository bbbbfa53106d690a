"""ClipSpot as a Ray Serve application: `services.ray_app:app` (and `build_app` for arguments).

    serve run deploy/serve.yaml                  # or: serve run services.ray_app:app
    clipspot serve --ray                         # starts Ray + Serve here, gRPC on port 9000

Serve's own gRPC proxy is the front (port 9000, every node): each StreamSpot call lands on one
`StreamIngress` replica and stays there for its whole life, so that replica holds the stream's
state (decoder, queue, runner, tracker) exactly as the embedded server does, through the same
service core (services/servicer.py). Only the model is remote:

    client ⇄ Serve gRPC proxy ⇄ StreamIngress (stream state) ⇄ TextSpotter (stateless, batched,
                                                                autoscaled; services/ray_spotter.py)

docs/ray.md explains the choices (front, state with the call, batching, autoscaling, cache keys).
Metrics: the same ones as embedded (services/metrics.py), through `ray.serve.metrics`, which Ray
exports with a `ray_` prefix on each node's metrics port. Health: `Check` says NOT_SERVING until
this replica's RayEngine has had the model checksum from a TextSpotter replica. Reflection
(v1alpha) is served by Serve's proxy itself (`grpc_options.enable_reflection`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import threading
from pathlib import Path

from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve.handle import DeploymentHandle

from pipeline.model.word_reader import check_reader_name
from pipeline.runner import RunnerConfig
from pipeline.video_job import runner_config
from services.auth import TokenAuth, read_tokens
from services.metrics import RaySink, Recorder
from services.ray_spotter import RayEngine, TextSpotter
from services.servicer import RpcFailure, SpottingService, client_identity
from services.stream_types import SessionLimits

log = logging.getLogger("clipspot.ray")

APP_NAME = "clipspot"
ROUTE_PREFIX = "/clipspot"  # Serve 2.60 does not route gRPC to an app without one
GRPC_SERVICERS = [
    "services.rpc.clipspot.v1.spotting_pb2_grpc.add_TextSpottingServicer_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]
CHECK_WAIT_S = 1.0  # a probe waits this long for the first checksum before NOT_SERVING
ENV_KEYS = {  # build_app argument -> environment variable the replicas read
    "weights": "CLIPSPOT_WEIGHTS",
    "device": "CLIPSPOT_DEVICE",
    "reader": "CLIPSPOT_READER",
    "redis_url": "CLIPSPOT_REDIS_URL",
    "torch_threads": "CLIPSPOT_TORCH_THREADS",
    "max_side": "CLIPSPOT_MAX_SIDE",
}


@serve.deployment(
    name="StreamIngress",
    max_ongoing_requests=64,  # a bidi stream is ONE ongoing request for its whole life
    ray_actor_options={"num_cpus": 0.5},  # decoding, motion following, tracking
    graceful_shutdown_timeout_s=30,
)
class StreamIngress:
    """Serve's face of the service core: owns each bidi stream and its state."""

    def __init__(
        self,
        spotter: DeploymentHandle,
        runner: RunnerConfig | None = None,
        limits: SessionLimits | None = None,
        token_file: str | None = None,
    ) -> None:
        import cv2

        cv2.setNumThreads(1)  # motion following's small calls; as the embedded server pins it
        self.service = SpottingService(RayEngine(spotter), limits, runner=runner,
                                       metrics=Recorder(RaySink()))
        # Serve's proxy has no interceptors: the replica checks the token itself, before the
        # service sees the call (a file it cannot read fails the replica, visibly, in Serve).
        self._auth = TokenAuth(read_tokens(token_file)) if token_file else None
        self._warm_up: asyncio.Future | None = None

    async def StreamSpot(self, request_stream, grpc_context):
        # Serve's gRPC context has no initial metadata: the model checksum goes as trailing.
        grpc_context.set_trailing_metadata(list(await self.service.model_metadata()))
        try:
            self._authorize(grpc_context)
            client = client_identity(grpc_context, by_token=self._auth is not None)
            async for response in self.service.stream_spot(request_stream, client):
                yield response
        except RpcFailure as failure:
            _fail(grpc_context, failure)

    async def SpotImage(self, request, grpc_context):
        grpc_context.set_trailing_metadata(list(await self.service.model_metadata()))
        try:
            self._authorize(grpc_context)
            return await self.service.spot_image(request)
        except RpcFailure as failure:
            _fail(grpc_context, failure)

    def _authorize(self, grpc_context) -> None:  # type: ignore[no-untyped-def]
        """The embedded server's TokenAuth check, on this replica (health stays open)."""
        refusal = self._auth.refusal(grpc_context.invocation_metadata()) if self._auth else None
        if refusal is not None:
            raise RpcFailure(*refusal)

    async def Check(self, request):  # grpc.health.v1, for kubelet gRPC probes
        # SERVING only once a TextSpotter replica has answered (named its model); the first
        # probe starts asking and waits a moment, later ones see the answer.
        if not self.service.model_ready:
            if self._warm_up is None or self._warm_up.done():
                self._warm_up = asyncio.ensure_future(self.service.warm_up())
            with contextlib.suppress(Exception):  # timeout, or no replica yet: NOT_SERVING
                await asyncio.wait_for(asyncio.shield(self._warm_up), CHECK_WAIT_S)
        return health_pb2.HealthCheckResponse(status=self.service.health_status())

    async def engine_retries(self) -> int:
        """Spotter calls repeated on another replica (tests; logs say which)."""
        return self.service.engine.retries  # type: ignore[attr-defined]


class StatusSet(Exception):
    """Raised after setting a status on the context: Serve's proxy then sends that status."""


def _fail(grpc_context, failure: RpcFailure) -> None:  # type: ignore[no-untyped-def]
    # Serve 2.60 sends a code set on the context only when the method raises (for streams;
    # otherwise the stream ends OK); the details set here replace the exception's text.
    grpc_context.set_code(failure.code)
    grpc_context.set_details(failure.message)
    raise StatusSet(failure.message)


BUILD_KEYS = frozenset({
    *ENV_KEYS, "spotter_replicas", "ingress_replicas", "num_gpus", "spotter_cpus",
    "ingress_cpus", "max_batch_size", "graceful_shutdown_timeout_s", "detect_every",
    "every_frame", "max_streams_per_client", "token_file",
})


def build_app(args: dict) -> serve.Application:
    """Application builder (`serve run services.ray_app:build_app weights=... num_gpus=0.5`).

    Keys (all optional): weights, device, reader, redis_url, torch_threads (passed to replicas as
    CLIPSPOT_* env vars), spotter_replicas, ingress_replicas, num_gpus, spotter_cpus,
    max_batch_size, ingress_cpus (0 packs test clusters), graceful_shutdown_timeout_s,
    max_side (CLIPSPOT_MAX_SIDE), and the streams' default keyframe mode: detect_every (5),
    every_frame (false), as `clipspot serve --detect-every/--every-frame`;
    max_streams_per_client (0: no limit; counted per StreamIngress replica, by token when
    tokens are on, else by peer address); token_file (a path on every ingress node, e.g. a
    mounted Secret: calls need `authorization: Bearer <token>`, as `clipspot serve --token-file`).
    An unknown key (a typo, or one of an older layout such as decoder_replicas) is refused.
    """
    unknown = sorted(set(args) - BUILD_KEYS)
    if unknown:
        raise ValueError(f"build_app: unknown argument(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(BUILD_KEYS))}")
    check_reader_name(args.get("reader"))  # an unknown reader fails here, not in a replica
    env = {var: str(args[key]) for key, var in ENV_KEYS.items() if args.get(key) is not None}
    runtime_env = {"env_vars": env} if env else {}
    common: dict = {}
    if "graceful_shutdown_timeout_s" in args:
        common["graceful_shutdown_timeout_s"] = float(args["graceful_shutdown_timeout_s"])
    ingress_actor = {**StreamIngress.ray_actor_options, "runtime_env": runtime_env}
    if "ingress_cpus" in args:
        ingress_actor["num_cpus"] = float(args["ingress_cpus"])
    spotter_actor = {**TextSpotter.ray_actor_options, "runtime_env": runtime_env}
    if "num_gpus" in args:
        spotter_actor["num_gpus"] = float(args["num_gpus"])  # fractions pack replicas on a GPU
    if "spotter_cpus" in args:
        spotter_actor["num_cpus"] = float(args["spotter_cpus"])
    max_batch = int(args.get("max_batch_size", 8))
    spotter = TextSpotter.options(
        num_replicas=int(args.get("spotter_replicas", 1)),
        ray_actor_options=spotter_actor,
        user_config={"max_batch_size": max_batch},
        max_ongoing_requests=max(32, 4 * max_batch),
        **common,
    )
    ingress = StreamIngress.options(
        num_replicas=int(args.get("ingress_replicas", 1)),
        ray_actor_options=ingress_actor,
        **common,
    )
    limits = SessionLimits(max_streams_per_client=int(args.get("max_streams_per_client", 0)))
    return ingress.bind(spotter.bind(), _runner_config(args), limits=limits,
                        token_file=args.get("token_file") or None)


def _runner_config(args: dict) -> RunnerConfig:
    every_frame = str(args.get("every_frame", "")).lower() in ("1", "true", "yes")
    return runner_config(max(1, int(args.get("detect_every", 5))), every_frame=every_frame)


app = build_app({})


def run_ray(args: argparse.Namespace) -> int:
    """`clipspot serve --ray`: start (or join) Ray, deploy, serve gRPC until SIGTERM/Ctrl-C."""
    import ray
    from ray.serve.config import gRPCOptions

    ray.init(address="auto" if _cluster_running() else None, include_dashboard=False)
    serve.start(grpc_options=gRPCOptions(port=args.port, grpc_servicer_functions=GRPC_SERVICERS))
    builder_args = {
        "weights": args.weights,
        "device": args.device,
        "reader": args.reader,
        "redis_url": args.redis_url,
        "torch_threads": getattr(args, "threads", None),
        "max_batch_size": getattr(args, "max_batch", None) or 8,
        "max_side": getattr(args, "max_side", None),
        "detect_every": getattr(args, "detect_every", 5),
        "every_frame": bool(getattr(args, "every_frame", False)),
        "max_streams_per_client": getattr(args, "max_streams_per_client", 0) or 0,
        # Absolute: replicas do not start in this directory.
        "token_file": str(Path(args.token_file).resolve()) if args.token_file else None,
    }
    if getattr(args, "drain_grace", None) is not None:  # `--drain-grace`: the same grace here
        builder_args["graceful_shutdown_timeout_s"] = args.drain_grace
    serve.run(build_app(builder_args), name=APP_NAME, route_prefix=ROUTE_PREFIX)
    log.info("clipspot serve --ray: gRPC on port %d (application %r)", args.port, APP_NAME)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("shutting down: Serve drains replicas (graceful_shutdown_timeout_s)")
    serve.shutdown()
    ray.shutdown()
    return 0


def _cluster_running() -> bool:
    import os

    return bool(os.environ.get("RAY_ADDRESS"))
