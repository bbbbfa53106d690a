"""The embedded gRPC server: TextSpotting + health + reflection in one grpc.aio process.

    server = EmbeddedServer(LocalEngine(Spotter.load()), ServerConfig(port=50051))
    await server.start()
    await server.wait()          # returns after SIGTERM/SIGINT (or `request_stop()`) and draining

Each StreamSpot call runs services/stream_driver.run_stream; bad input raises StreamError there
and ends only that call with INVALID_ARGUMENT and the error's message — the server keeps serving
every other stream. Shutdown drains: health turns NOT_SERVING, new calls are refused, each open
stream stops reading, answers every frame it already received, sends its track-end events and
closes with UNAVAILABLE naming the seq to resume from (OK if the client had already finished).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pipeline.errors import ClipSpotError
from services.convert import instance_to_proto
from services.local_engine import LocalEngine
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.rpc.clipspot.v1 import spotting_pb2_grpc as pb_grpc
from services.session import SessionLimits, StreamError, decode_spot_image
from services.stream_driver import StreamDrained, run_stream

log = logging.getLogger("clipspot.serve")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TextSpotting"].full_name  # clipspot.v1.TextSpotting
DEFAULT_PORT = 50051


MODEL_METADATA_KEY = "clipspot-model"  # initial metadata: Spotter.checksum (weights + reader)


@dataclass(frozen=True)
class ServerConfig:
    port: int = DEFAULT_PORT  # 0: let the OS pick (tests)
    host: str = "[::]"
    max_message_bytes: int = 64 * 1024 * 1024  # raw 1080p RGB is 6.2 MB; gRPC's default is 4 MiB
    drain_grace_s: float = 30.0  # how long open streams get to finish after SIGTERM
    limits: SessionLimits = field(default_factory=SessionLimits)


class TextSpottingServicer(pb_grpc.TextSpottingServicer):
    def __init__(self, engine: LocalEngine, limits: SessionLimits, draining: asyncio.Event):
        self.engine = engine
        self.limits = limits
        self.draining = draining
        # Which weights file and reader answer, so a client can tell results of models apart.
        self.model_metadata = ((MODEL_METADATA_KEY, engine.spotter.checksum),)

    async def StreamSpot(self, request_iterator, context):
        await context.send_initial_metadata(self.model_metadata)
        try:
            async for response in run_stream(
                request_iterator, self.engine, self.limits, self.draining
            ):
                yield response
        except StreamError as err:
            log.warning("%s", err)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except StreamDrained as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))

    async def SpotImage(self, request, context):
        await context.send_initial_metadata(self.model_metadata)
        try:
            image = await asyncio.to_thread(decode_spot_image, request, self.limits)
            try:
                embedding = await self.engine.prompt_embedding(request.prompt or None)
            except ClipSpotError as err:
                raise ClipSpotError(f"SpotImage: prompt: {err}") from None
        except ClipSpotError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        (instances,) = await self.engine.spot_images([image], embedding)
        height, width = image.shape[:2]
        return pb.SpotImageResponse(
            instances=[instance_to_proto(i) for i in instances], width=width, height=height
        )



class EmbeddedServer:
    """grpc.aio server with the TextSpotting, Health and Reflection services."""

    def __init__(self, engine: LocalEngine, config: ServerConfig | None = None) -> None:
        self.engine = engine
        self.config = config or ServerConfig()
        self.draining = asyncio.Event()
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
        servicer = TextSpottingServicer(self.engine, self.config.limits, self.draining)
        pb_grpc.add_TextSpottingServicer_to_server(servicer, server)
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
        log.info("draining: finishing in-flight frames (grace %.0f s)", self.config.drain_grace_s)
        await self.health.enter_graceful_shutdown()
        self.draining.set()
        # Refuses new calls at once; open streams finish on their own (draining) within grace.
        await self._server.stop(self.config.drain_grace_s)
        self._server = None
        await self.engine.close()
        log.info("stopped")
