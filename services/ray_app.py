"""ClipSpot as a Ray Serve application: `services.ray_app:app` (and `build_app` for arguments).

    serve run deploy/serve.yaml                  # or: serve run services.ray_app:app
    clipspot serve --ray                         # starts Ray + Serve here, gRPC on port 9000

Serve's own gRPC proxy is the front (port 9000, every node): each StreamSpot call lands on one
`StreamIngress` replica and stays there for its whole life. The ingress runs the same stream
state machine as the embedded server (services/stream_driver.py, via services/ray_stream.py)
and calls three deployments (services/ray_deployments.py):

    client ⇄ Serve gRPC proxy ⇄ StreamIngress ─┬─ FrameDecoder     (per-stream decoder, sticky)
                                               ├─ TextSpotter      (@serve.batch across streams)
                                               └─ TrackAggregator  (per-stream tracker, sticky)

Replicas read CLIPSPOT_WEIGHTS, CLIPSPOT_DEVICE, CLIPSPOT_REDIS_URL, CLIPSPOT_TORCH_THREADS from
their environment (runtime_env in the Serve config, or set by `build_app` arguments).
docs/ray.md explains the choices (front, state pinning, batching, autoscaling, cache keys).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import threading

import grpc
from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve.handle import DeploymentHandle

from pipeline.errors import ClipSpotError
from pipeline.model.word_reader import check_reader_name
from services.convert import instance_to_proto
from services.grpc_server import MODEL_METADATA_KEY
from services.ray_deployments import FrameDecoder, StreamStateLost, TextSpotter, TrackAggregator
from services.ray_stream import RaySpotEngine, run_ray_stream
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.session import SessionLimits, StreamError
from services.stream_driver import StreamDrained

log = logging.getLogger("clipspot.ray")

APP_NAME = "clipspot"
ROUTE_PREFIX = "/clipspot"  # Serve 2.60 does not route gRPC to an app without one
GRPC_SERVICERS = [
    "services.rpc.clipspot.v1.spotting_pb2_grpc.add_TextSpottingServicer_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]
ENV_KEYS = {  # build_app argument -> environment variable the replicas read
    "weights": "CLIPSPOT_WEIGHTS",
    "device": "CLIPSPOT_DEVICE",
    "reader": "CLIPSPOT_READER",
    "redis_url": "CLIPSPOT_REDIS_URL",
    "torch_threads": "CLIPSPOT_TORCH_THREADS",
}


@serve.deployment(
    name="StreamIngress",
    max_ongoing_requests=64,  # a bidi stream is ONE ongoing request for its whole life
    ray_actor_options={"num_cpus": 0.25},
    graceful_shutdown_timeout_s=30,
)
class StreamIngress:
    """The gRPC ingress: owns each bidi stream and drives it through the other deployments."""

    def __init__(
        self,
        decoder: DeploymentHandle,
        spotter: DeploymentHandle,
        aggregator: DeploymentHandle,
    ) -> None:
        self.decoder = decoder
        self.spotter = spotter
        self.aggregator = aggregator
        self.engine = RaySpotEngine(spotter)
        self.limits = SessionLimits()
        self.draining = asyncio.Event()
        self.model_checksum: str | None = None

    async def StreamSpot(self, request_stream, grpc_context):
        # Serve's gRPC context has no initial metadata: the model checksum goes as trailing.
        grpc_context.set_trailing_metadata([(MODEL_METADATA_KEY, await self._checksum())])
        try:
            async for response in run_ray_stream(
                request_stream, self.engine, self.decoder, self.aggregator, self.limits,
                self.draining,
            ):
                yield response
        except StreamError as err:
            log.warning("%s", err)
            _fail(grpc_context, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except StreamDrained as err:
            _fail(grpc_context, grpc.StatusCode.UNAVAILABLE, str(err))
        except StreamStateLost as err:
            _fail(grpc_context, grpc.StatusCode.UNAVAILABLE,
                  f"per-stream state lost ({err}); reconnect and resume")

    async def SpotImage(self, request, grpc_context):
        from services.session import decode_spot_image

        grpc_context.set_trailing_metadata([(MODEL_METADATA_KEY, await self._checksum())])
        try:
            image = await asyncio.to_thread(decode_spot_image, request, self.limits)
        except ClipSpotError as err:
            _fail(grpc_context, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        prompt = await self.engine.prompt_embedding(request.prompt or None)
        instances = await self.engine.spot(image, prompt)
        height, width = image.shape[:2]
        return pb.SpotImageResponse(
            instances=[instance_to_proto(i) for i in instances], width=width, height=height
        )

    async def _checksum(self) -> str:
        if self.model_checksum is None:
            self.model_checksum = await self.spotter.model_checksum.remote()
        return self.model_checksum

    async def Check(self, request):  # grpc.health.v1, for kubelet gRPC probes
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


class StatusSet(Exception):
    """Raised after setting a status on the context: Serve's proxy then sends that status."""


def _fail(grpc_context, code: grpc.StatusCode, message: str) -> None:  # type: ignore[no-untyped-def]
    # Serve 2.60 sends a code set on the context only when the method raises (for streams;
    # otherwise the stream ends OK); the details set here replace the exception's text.
    grpc_context.set_code(code)
    grpc_context.set_details(message)
    raise StatusSet(message)


def build_app(args: dict) -> serve.Application:
    """Application builder (`serve run services.ray_app:build_app weights=... num_gpus=0.5`).

    Keys (all optional): weights, device, reader, redis_url, torch_threads (passed to replicas as
    CLIPSPOT_* env vars), spotter_replicas, decoder_replicas, aggregator_replicas,
    ingress_replicas, num_gpus, spotter_cpus, max_batch_size, batch_wait_timeout_s,
    replica_cpus (CPUs for ingress/decoder/aggregator replicas; 0 packs test clusters),
    graceful_shutdown_timeout_s.
    """
    check_reader_name(args.get("reader"))  # an unknown reader fails here, not in a replica
    env = {var: str(args[key]) for key, var in ENV_KEYS.items() if args.get(key) is not None}
    runtime_env = {"env_vars": env} if env else {}
    common: dict = {}
    if "graceful_shutdown_timeout_s" in args:
        common["graceful_shutdown_timeout_s"] = float(args["graceful_shutdown_timeout_s"])
    small = {} if "replica_cpus" not in args else {"num_cpus": float(args["replica_cpus"])}

    def light(deployment, replicas_key: str):  # type: ignore[no-untyped-def]
        options = dict(common, num_replicas=int(args.get(replicas_key, 1)))
        if small or runtime_env:
            options["ray_actor_options"] = {**deployment.ray_actor_options, **small,
                                            "runtime_env": runtime_env}
        return deployment.options(**options)

    spotter_actor = {**TextSpotter.ray_actor_options, "runtime_env": runtime_env}
    if "num_gpus" in args:
        spotter_actor["num_gpus"] = float(args["num_gpus"])  # fractions pack replicas on a GPU
    if "spotter_cpus" in args:
        spotter_actor["num_cpus"] = float(args["spotter_cpus"])
    batch = {
        "max_batch_size": int(args.get("max_batch_size", 8)),
        "batch_wait_timeout_s": float(args.get("batch_wait_timeout_s", 0.01)),
    }
    spotter = TextSpotter.options(
        num_replicas=int(args.get("spotter_replicas", 1)),
        ray_actor_options=spotter_actor,
        user_config=batch,
        max_ongoing_requests=max(32, 4 * batch["max_batch_size"]),
        **common,
    )
    return light(StreamIngress, "ingress_replicas").bind(
        light(FrameDecoder, "decoder_replicas").bind(),
        spotter.bind(),
        light(TrackAggregator, "aggregator_replicas").bind(),
    )


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
    }
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
