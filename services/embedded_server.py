"""The embedded gRPC server: TextSpotting + health + reflection in one grpc.aio process.

    server = EmbeddedServer(LocalEngine(Spotter.load()), ServerConfig(port=50051))
    await server.start()
    await server.wait()          # returns after SIGTERM/SIGINT (or `request_stop()`) and draining

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
from grpc_reflection.v1alpha import reflection

from pipeline.errors import ClipSpotError
from pipeline.runner import RunnerConfig
from services.engines import SpotEngine
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.rpc.clipspot.v1 import spotting_pb2_grpc as pb_grpc
from services.servicer import RpcFailure, SpottingService
from services.stream_types import SessionLimits

log = logging.getLogger("clipspot.serve")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TextSpotting"].full_name  # clipspot.v1.TextSpotting
DEFAULT_PORT = 50051


@dataclass(frozen=True)
class ServerConfig:
    port: int = DEFAULT_PORT  # 0: let the OS pick (tests)
    host: str = "[::]"
    max_message_bytes: int = 64 * 1024 * 1024  # raw 1080p RGB is 6.2 MB; gRPC's default is 4 MiB
    drain_grace_s: float = 30.0  # how long open streams get to finish after SIGTERM
    limits: SessionLimits = field(default_factory=SessionLimits)
    runner: RunnerConfig = field(default_factory=RunnerConfig)  # streams' default keyframe mode


class TextSpottingServicer(pb_grpc.TextSpottingServicer):
    """grpc.aio's face of the service core."""

    def __init__(self, service: SpottingService) -> None:
        self.service = service

    async def StreamSpot(self, request_iterator, context):
        await context.send_initial_metadata(await self.service.model_metadata())
        try:
            async for response in self.service.stream_spot(request_iterator):
                yield response
        except RpcFailure as failure:
            await context.abort(failure.code, failure.message)

    async def SpotImage(self, request, context):
        await context.send_initial_metadata(await self.service.model_metadata())
        try:
            return await self.service.spot_image(request)
        except RpcFailure as failure:
            await context.abort(failure.code, failure.message)


class EmbeddedServer:
    """grpc.aio server with the TextSpotting, Health and Reflection services."""

    def __init__(self, engine: SpotEngine, config: ServerConfig | None = None) -> None:
        self.engine = engine
        self.config = config or ServerConfig()
        self.service = SpottingService(engine, self.config.limits, self.config.runner)
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self._stop = asyncio.Event()
        self._server: grpc.aio.Server | None = None

    async def start(self) -> int:
        size = self.config.max_message_bytes
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", size),
            ("grpc.max_send_message_length", size),
        ])
        pb_grpc.add_TextSpottingServicer_to_server(TextSpottingServicer(self.service), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        address = f"{self.config.host}:{self.config.port}"
        self.port = server.add_insecure_port(address)
        if not self.port:
            raise ClipSpotError(f"serve: cannot listen on {address} (port in use?)")
        await server.start()
        self._server = server
        serving = health_pb2.HealthCheckResponse.SERVING
        await self.health.set("", serving)
        await self.health.set(SERVICE_NAME, serving)
        log.info("serving %s on port %d", SERVICE_NAME, self.port)
        return self.port

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
        await self.engine.close()
        log.info("stopped")
