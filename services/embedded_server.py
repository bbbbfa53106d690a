"""The embedded gRPC server: TextSpotting + health + reflection in one grpc.aio process.

    server = EmbeddedServer(None, ServerConfig(port=50051, metrics_port=9464))
    await server.start()         # listening; health NOT_SERVING, calls UNAVAILABLE
    await server.set_engine(LocalEngine(Spotter.load()))   # health SERVING
    await server.wait()          # returns after SIGTERM/SIGINT (or `request_stop()`) and draining

(`EmbeddedServer(engine, config)` with the engine at hand is SERVING as soon as it starts.)
Prometheus metrics (services/metrics.py) are served on `metrics_port` at /metrics; reflection
answers v1 and v1alpha (services/reflection.py). It listens on 127.0.0.1 unless `host` says
otherwise; `tls` (services/tls.py) encrypts the port, and `tokens` (services/auth.py) make every
TextSpotting call present one of them (health and reflection stay open for probes).

Each call goes to the one service core (services/servicer.py); this file only maps its
`RpcFailure`s onto `context.abort`. Shutdown drains: health turns NOT_SERVING while the
listener still answers probes, new streams get UNAVAILABLE, each open stream stops reading,
answers what it can within the grace, sends its track-end events and closes with UNAVAILABLE
naming the frame to resume from (OK if the client had already finished). Then the listener
closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pipeline.errors import ClipSpotError
from pipeline.runner import RunnerConfig
from services.auth import TokenAuth
from services.engines import LocalEngine, SpotEngine
from services.metrics import PrometheusSink, Recorder, serve_metrics
from services.reflection import enable_reflection
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.rpc.clipspot.v1 import spotting_pb2_grpc as pb_grpc
from services.servicer import RpcFailure, SpottingService, client_identity
from services.stream_types import SessionLimits
from services.tls import ServerTls

log = logging.getLogger("clipspot.serve")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TextSpotting"].full_name  # clipspot.v1.TextSpotting
DEFAULT_PORT = 50051


@dataclass(frozen=True)
class ServerConfig:
    port: int = DEFAULT_PORT  # 0: let the OS pick (tests)
    host: str = "127.0.0.1"  # loopback: listening on every interface is an explicit choice
    max_message_bytes: int = 64 * 1024 * 1024  # raw 1080p RGB is 6.2 MB; gRPC's default is 4 MiB
    drain_grace_s: float = 30.0  # how long open streams get to finish after SIGTERM
    metrics_port: int | None = None  # Prometheus /metrics; None: off; 0: the OS picks (tests)
    limits: SessionLimits = field(default_factory=SessionLimits)
    runner: RunnerConfig = field(default_factory=RunnerConfig)  # streams' default keyframe mode
    tls: ServerTls | None = None  # None: plaintext
    tokens: tuple[bytes, ...] = ()  # accepted bearer tokens; empty: no token needed
    # A peer that stops answering without closing (a silent network) is found by HTTP/2 pings:
    # one every keepalive_s, and the connection (with its streams) is dropped when the answer
    # takes longer than keepalive_timeout_s. gRPC's own default waits 2 hours. 0: off.
    keepalive_s: float = 20.0
    keepalive_timeout_s: float = 10.0


NEVER_MS = 2**31 - 1  # gRPC's "infinite" for a millisecond option (~24.8 days)
MIN_CLIENT_PING_MS = 10_000  # clients may ping this often (services/client.py pings every 30 s)


def channel_options(config: ServerConfig) -> list[tuple[str, int]]:
    """The server's gRPC channel options: message size and keepalive."""
    size = config.max_message_bytes
    time_ms = round(config.keepalive_s * 1000) if config.keepalive_s > 0 else NEVER_MS
    timeout_ms = max(1, round(config.keepalive_timeout_s * 1000))
    return [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
        ("grpc.keepalive_time_ms", time_ms),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        # Since gRPC 1.59 the wait for a ping's answer is this one (default 1 minute).
        ("grpc.http2.ping_timeout_ms", timeout_ms),
        # The server's pings go on while the peer sends nothing: a silent peer sends nothing,
        # and the default (2 pings without data) would stop pinging just when it matters.
        ("grpc.http2.max_pings_without_data", 0),
        # Clients that ping (keepalive) are welcome, also between calls: gRPC's default answers
        # a ping more often than every 5 minutes with GOAWAY "too_many_pings".
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", MIN_CLIENT_PING_MS),
    ]


class TextSpottingServicer(pb_grpc.TextSpottingServicer):
    """grpc.aio's face of the service core."""

    def __init__(self, service: SpottingService, by_token: bool = False) -> None:
        self.service = service
        self.by_token = by_token  # tokens are enforced: per-client limits count per token

    async def StreamSpot(self, request_iterator, context):
        try:
            await context.send_initial_metadata(await self.service.model_metadata())
            client = client_identity(context, by_token=self.by_token)
            async for response in self.service.stream_spot(request_iterator, client):
                yield response
        except RpcFailure as failure:
            await context.abort(failure.code, failure.message)

    async def SpotImage(self, request, context):
        try:
            await context.send_initial_metadata(await self.service.model_metadata())
            return await self.service.spot_image(request)
        except RpcFailure as failure:
            await context.abort(failure.code, failure.message)


class EmbeddedServer:
    """grpc.aio server with the TextSpotting, Health and Reflection services."""

    def __init__(self, engine: SpotEngine | None, config: ServerConfig | None = None) -> None:
        self.engine = engine
        self.config = config or ServerConfig()
        self.registry = None  # its own prometheus registry: tests run several servers at once
        sink = None
        if self.config.metrics_port is not None:
            import prometheus_client

            self.registry = prometheus_client.CollectorRegistry()
            sink = PrometheusSink(self.registry)
        self.service = SpottingService(None, self.config.limits, self.config.runner,
                                       metrics=Recorder(sink))
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._metrics_http: object | None = None
        self._stop = asyncio.Event()
        self._server: grpc.aio.Server | None = None

    async def start(self) -> int:
        interceptors = [TokenAuth(self.config.tokens)] if self.config.tokens else []
        server = grpc.aio.server(interceptors=interceptors, options=channel_options(self.config))
        servicer = TextSpottingServicer(self.service, by_token=bool(self.config.tokens))
        pb_grpc.add_TextSpottingServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        enable_reflection((SERVICE_NAME, health.SERVICE_NAME), server)
        address = f"{self.config.host}:{self.config.port}"
        self.port = self._listen(server, address)
        if not self.port:
            raise ClipSpotError(f"serve: cannot listen on {address} (port in use?)")
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)  # before any probe
        await server.start()
        self._server = server
        if self.config.metrics_port is not None:
            self._start_metrics()
        log.info("listening for %s on %s port %d (%s%s)", SERVICE_NAME, self.config.host,
                 self.port, self._transport(), ", bearer tokens" if self.config.tokens else "")
        if self.engine is not None:
            await self.set_engine(self.engine)
        return self.port

    def _listen(self, server: grpc.aio.Server, address: str) -> int:
        if self.config.tls is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, self.config.tls.credentials())

    def _transport(self) -> str:
        tls = self.config.tls
        if tls is None:
            return "plaintext"
        return "mutual TLS" if tls.client_ca else "TLS"

    def _start_metrics(self) -> None:
        # Metrics are secondary: a taken port (a second server on the machine) is logged
        # loudly, but the server still spots.
        try:
            self._metrics_http, self.metrics_port = serve_metrics(
                self.registry, self.config.host, self.config.metrics_port or 0)
        except OSError as err:
            log.error("no Prometheus metrics: cannot listen on port %s (%s); serving without",
                      self.config.metrics_port, err)
            return
        log.info("Prometheus metrics on port %d at /metrics", self.metrics_port)

    async def set_engine(self, engine: SpotEngine) -> None:
        """The model is loaded: ask it which model it is, then report SERVING."""
        self.engine = engine
        self.service.set_engine(engine)
        if isinstance(engine, LocalEngine):  # its prompt cache counts hits in this process
            self.service.metrics.cache = engine.cache.stats
        await self.service.warm_up()
        if self.service.health_status() == health_pb2.HealthCheckResponse.SERVING:
            await self._set_health(health_pb2.HealthCheckResponse.SERVING)
            log.info("serving %s on port %d", SERVICE_NAME, self.port)

    async def _set_health(self, status: int) -> None:
        await self.health.set("", status)
        await self.health.set(SERVICE_NAME, status)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        """Serve until a stop is requested, then drain and stop."""
        await self._stop.wait()
        await self.stop()

    async def stop(self) -> None:
        if self._server is None:
            return
        grace = self.config.drain_grace_s
        log.info("draining %d streams (grace %.0f s)", self.service.open_streams, grace)
        await self.health.enter_graceful_shutdown()  # probes now see NOT_SERVING
        self.service.drain.begin(grace)  # new streams refused; open ones stop reading
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.service.idle.wait(), grace)
        await self._server.stop(1.0)  # every stream has ended (or the grace is spent)
        self._server = None
        if self._metrics_http is not None:
            http, self._metrics_http = self._metrics_http, None
            await asyncio.to_thread(http.shutdown)  # type: ignore[attr-defined]
            http.server_close()  # type: ignore[attr-defined]
        if self.engine is not None:
            await self.engine.close()
        log.info("stopped")
