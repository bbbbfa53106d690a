"""The TextSpotting service, written once: StreamSpot, SpotImage, health and status codes.

Both fronts wrap this: the embedded grpc.aio server (services/embedded_server.py) and the Ray
Serve ingress (services/ray_app.py). They differ only in how a status reaches the client
(`context.abort` there, `set_code` + raise on Serve's proxy), so each catches `RpcFailure` and
sends `code` and `message`. Protobuf is parsed and built here and in services/grpc_edge.py only.

    service = SpottingService(engine, limits, runner_default, drain)
    async for response in service.stream_spot(request_iterator): ...   # RpcFailure on errors
    response = await service.spot_image(request)                       # RpcFailure on errors
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2

from pipeline.decode import decode_image_bytes
from pipeline.errors import ClipSpotError
from pipeline.runner import RunnerConfig
from services.engines import SpotEngine, spot_image
from services.grpc_edge import (
    instance_to_proto,
    output_to_proto,
    payload_from_proto,
    settings_from_proto,
)
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.stream_core import Drain, run_stream
from services.stream_types import (
    CreditsExceeded,
    SessionLimits,
    StreamDrained,
    StreamError,
)

log = logging.getLogger("clipspot.service")

MODEL_METADATA_KEY = "clipspot-model"  # Spotter.checksum (weights + reader) of the answers


class RpcFailure(Exception):
    """End the call with this gRPC status and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def status_of(err: BaseException) -> RpcFailure | None:
    """The status a stream error ends with (see the .proto); None: not a client's error."""
    if isinstance(err, CreditsExceeded):
        return RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
    if isinstance(err, StreamError):
        return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, str(err))
    if isinstance(err, StreamDrained):
        return RpcFailure(grpc.StatusCode.UNAVAILABLE, str(err))
    return None


class SpottingService:
    """StreamSpot and SpotImage over one engine, with health and shutdown (`drain`)."""

    def __init__(
        self,
        engine: SpotEngine,
        limits: SessionLimits | None = None,
        runner: RunnerConfig | None = None,
        drain: Drain | None = None,
    ) -> None:
        self.engine = engine
        self.limits = limits or SessionLimits()
        self.runner = runner or RunnerConfig()
        self.drain = drain or Drain()
        self.open_streams = 0
        self.idle = asyncio.Event()  # set while no stream is open (the drain waits on it)
        self.idle.set()
        self._checksum: str | None = None

    async def model_metadata(self) -> tuple[tuple[str, str], ...]:
        """Which weights and reader answer, so a client can tell results of models apart."""
        if self._checksum is None:
            self._checksum = await self.engine.model_checksum()
        return ((MODEL_METADATA_KEY, self._checksum),)

    def health_status(self) -> int:
        if self.drain.started.is_set():
            return health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse.SERVING

    async def stream_spot(
        self, requests: AsyncIterator[pb.StreamRequest]
    ) -> AsyncIterator[pb.StreamResponse]:
        if self.drain.started.is_set():
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE,
                             "server is shutting down and takes no new streams; "
                             "connect again (another replica or after the restart)")
        self.open_streams += 1
        self.idle.clear()
        try:
            iterator = aiter(requests)
            settings = settings_from_proto(await anext(iterator, None), self.limits)
            payloads = (payload_from_proto(request) async for request in iterator)
            async for output in run_stream(
                settings, payloads, self.engine, self.limits, self.runner, self.drain
            ):
                yield output_to_proto(output)
        except (StreamError, StreamDrained) as err:
            failure = status_of(err)
            log.warning("%s", err)
            raise failure from None  # type: ignore[misc]
        finally:
            self.open_streams -= 1
            if not self.open_streams:
                self.idle.set()

    async def spot_image(self, request: pb.SpotImageRequest) -> pb.SpotImageResponse:
        try:
            image = await asyncio.to_thread(self._decode_image, request)
            try:
                await self.engine.check_prompt(request.prompt or None)
            except ClipSpotError as err:
                raise ClipSpotError(f"SpotImage: prompt: {err}") from None
        except ClipSpotError as err:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        instances = await spot_image(self.engine, image, request.prompt or None)
        height, width = image.shape[:2]
        return pb.SpotImageResponse(
            instances=[instance_to_proto(i) for i in instances], width=width, height=height
        )

    def _decode_image(self, request: pb.SpotImageRequest):  # type: ignore[no-untyped-def]
        if not request.image:
            raise ClipSpotError("SpotImage: the request has no image bytes")
        if len(request.prompt) > self.limits.max_prompt_chars:
            raise ClipSpotError(f"SpotImage: prompt is {len(request.prompt)} characters, "
                                f"the limit is {self.limits.max_prompt_chars}")
        try:
            return decode_image_bytes(request.image)
        except ClipSpotError as err:
            raise ClipSpotError(f"SpotImage: undecodable image: {err}") from None
