"""The TextSpotting service, written once: StreamSpot, SpotImage, health and status codes.

Both fronts wrap this: the embedded grpc.aio server (services/embedded_server.py) and the Ray
Serve ingress (services/ray_app.py). They differ only in how a status reaches the client
(`context.abort` there, `set_code` + raise on Serve's proxy), so each catches `RpcFailure` and
sends `code` and `message`. Protobuf is parsed and built here and in services/grpc_edge.py only.

    service = SpottingService(engine, limits, runner_default, drain, metrics)
    async for response in service.stream_spot(request_iterator, client_identity(context)): ...
    response = await service.spot_image(request)                       # RpcFailure on errors

Each front names the calling client (`client_identity`: the bearer token's hash when tokens are
on, else the peer's address without its port); `limits.max_streams_per_client` caps the streams
one client holds open at once, so one client cannot take every stream slot of a replica.

The engine may come later (`set_engine`, once the model has loaded): until then, and until the
engine has named its model (`warm_up`), health says NOT_SERVING; calls arriving meanwhile wait
for the model (a client that connected early is served, not refused).
Metrics go through `metrics` (services/metrics.py), whichever front serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from pipeline.decode import decode_image_bytes
from pipeline.errors import ClipSpotError
from pipeline.runner import RunnerConfig
from services.engines import SpotEngine, spot_image
from services.grpc_edge import (
    instance_to_proto,
    output_to_proto,
    parsed_requests,
    payload_from_proto,
    settings_from_proto,
)
from services.metrics import Recorder
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


def client_identity(context: Any, by_token: bool = False) -> str:
    """Who is calling, for per-client limits and logs: never the token itself.

    `by_token` only where tokens are enforced: otherwise any client could mint a fresh identity
    per stream with a made-up header. The peer is gRPC's `ipv4:1.2.3.4:5678` form; the port is
    dropped, because each connection of one client has its own.
    """
    if by_token:
        for key, value in context.invocation_metadata() or ():
            token = value.split()[-1:] if key == "authorization" and isinstance(value, str) else []
            if token:
                return f"token sha256:{hashlib.sha256(token[0].encode()).hexdigest()[:8]}"
    peer = str(context.peer() or "unknown")
    host, _, port = peer.rpartition(":")
    return host if host and port.isdigit() else peer


class SpottingService:
    """StreamSpot and SpotImage over one engine, with health and shutdown (`drain`)."""

    def __init__(
        self,
        engine: SpotEngine | None,
        limits: SessionLimits | None = None,
        runner: RunnerConfig | None = None,
        drain: Drain | None = None,
        metrics: Recorder | None = None,
    ) -> None:
        self._engine = engine
        self.limits = limits or SessionLimits()
        self.runner = runner or RunnerConfig()
        self.drain = drain or Drain()
        self.metrics = metrics or Recorder()
        self.open_streams = 0
        self.client_streams: dict[str, int] = {}  # open streams per client_identity
        self.idle = asyncio.Event()  # set while no stream is open (the drain waits on it)
        self.idle.set()
        self._checksum: str | None = None
        self._loaded = asyncio.Event()
        if engine is not None:
            self._loaded.set()

    @property
    def engine(self) -> SpotEngine | None:
        return self._engine

    def set_engine(self, engine: SpotEngine) -> None:
        """The model has loaded: waiting calls go on; health turns SERVING after `warm_up`."""
        self._engine = engine
        self._loaded.set()

    async def loaded_engine(self) -> SpotEngine:
        """The engine, once there is one (calls made while the model loads wait here)."""
        await self._loaded.wait()
        assert self._engine is not None
        return self._engine

    @property
    def model_ready(self) -> bool:
        """The engine has named its model, i.e. the model answers."""
        return self._checksum is not None

    async def warm_up(self) -> str:
        """Ask the engine which model answers (waits for it); health is SERVING after."""
        if self._checksum is None:
            engine = await self.loaded_engine()
            self._checksum = await engine.model_checksum()
        return self._checksum

    async def model_metadata(self) -> tuple[tuple[str, str], ...]:
        """Which weights and reader answer, so a client can tell results of models apart."""
        return ((MODEL_METADATA_KEY, await self.warm_up()),)

    def health_status(self) -> int:
        if self.drain.started.is_set() or not self.model_ready:
            return health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse.SERVING

    def _refusal(self, client: str | None) -> RpcFailure | None:
        """Why a new stream is refused before it starts (shutdown, the client's limit)."""
        if self.drain.started.is_set():
            return RpcFailure(grpc.StatusCode.UNAVAILABLE,
                              "server is shutting down and takes no new streams; "
                              "connect again (another replica or after the restart)")
        limit = self.limits.max_streams_per_client
        held = self.client_streams.get(client or "", 0)
        if client and limit and held >= limit:
            return RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"client {client}: {held} streams open, the limit is {limit} "
                              "(--max-streams-per-client)")
        return None

    @contextmanager
    def _opened(self, client: str | None) -> Iterator[None]:
        """Count the stream as open (server-wide and for its client) while it runs."""
        self.open_streams += 1
        if client:
            self.client_streams[client] = self.client_streams.get(client, 0) + 1
        self.metrics.streams_open(self.open_streams)
        self.idle.clear()
        try:
            yield
        finally:
            if client:
                left = self.client_streams.pop(client) - 1
                if left:
                    self.client_streams[client] = left
            self.open_streams -= 1
            self.metrics.streams_open(self.open_streams)
            if not self.open_streams:
                self.idle.set()

    async def stream_spot(
        self, requests: AsyncIterator[pb.StreamRequest], client: str | None = None
    ) -> AsyncIterator[pb.StreamResponse]:
        """One StreamSpot call; `client` (`client_identity`) is what per-client limits count."""
        refusal = self._refusal(client)
        if refusal is not None:
            self.metrics.stream_ended(refusal.code.name)
            if refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                log.warning("%s", refusal.message)
            raise refusal
        # aclosing: a cancelled call ends the inner stream (its metrics) now, not at GC.
        with self._opened(client):
            async with aclosing(self._stream(requests)) as responses:
                async for response in responses:
                    yield response

    async def _stream(
        self, requests: AsyncIterator[pb.StreamRequest]
    ) -> AsyncIterator[pb.StreamResponse]:
        code, meter = "CANCELLED", None  # kept if the call is cancelled (client gone)
        try:
            engine = await self.loaded_engine()
            iterator = aiter(parsed_requests(requests))  # unparsable bytes: StreamError
            settings = settings_from_proto(await anext(iterator, None), self.limits)
            meter = self.metrics.stream(settings.stream_id, settings.drop_policy)
            payloads = (payload_from_proto(request) async for request in iterator)
            async for output in run_stream(
                settings, payloads, engine, self.limits, self.runner, self.drain, meter
            ):
                yield output_to_proto(output)
                self.metrics.sync_cache()
            code = grpc.StatusCode.OK.name
        except (StreamError, StreamDrained) as err:
            failure = status_of(err)
            code = failure.code.name  # type: ignore[union-attr]
            log.warning("%s", err)
            raise failure from None  # type: ignore[misc]
        except Exception:
            code = grpc.StatusCode.UNKNOWN.name  # what grpc sends for an unhandled error
            raise
        finally:
            if meter is not None:
                meter.close()
            self.metrics.stream_ended(code)

    async def spot_image(self, request: pb.SpotImageRequest) -> pb.SpotImageResponse:
        try:
            return await self._spot_image(request)
        finally:
            self.metrics.sync_cache()

    async def _spot_image(self, request: pb.SpotImageRequest) -> pb.SpotImageResponse:
        engine = await self.loaded_engine()
        try:
            image = await asyncio.to_thread(self._decode_image, request)
            try:
                await engine.check_prompt(request.prompt or None)
            except ClipSpotError as err:
                raise ClipSpotError(f"SpotImage: prompt: {err}") from None
        except ClipSpotError as err:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        instances = await spot_image(engine, image, request.prompt or None)
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
