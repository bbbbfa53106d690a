"""The StreamIngress side of one stream on Ray Serve: stream_driver's state machine, remote stages.

The embedded server and Ray run the same `services/stream_driver` logic (credits, sampling, drop
policy, draining, ordering). Only three things differ here, each a drop-in for what the driver
uses locally:

- `RemoteSource` stands in for `session.FrameSource`: decoding happens on the FrameDecoder
  replica that holds this stream's decoder (session-id routing on the stream key);
- `RemoteTracks` stands in for `session.TrackStage`: tracking happens on the TrackAggregator
  replica that holds this stream's tracker;
- `RaySpotEngine` is the `SpotEngine`: frames go to the batched TextSpotter deployment.

The driver calls FrameSource/TrackStage methods through `asyncio.to_thread`, so the two stand-ins
block on their handle calls from worker threads (allowed; the Serve router runs on its own loop).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from ray.serve.handle import DeploymentHandle

from pipeline.types import FrameResult, TextInstance, TrackEvent, VideoFrame
from services.convert import credits_response
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.session import SessionLimits, StreamError, StreamSettings, parse_config

# Private driver pieces reused on purpose: one state machine for both transports.
from services.stream_driver import _DONE, StreamDrained, _Stream, _supervise, log

_NO_PIXELS = np.zeros((0, 0, 3), dtype=np.uint8)  # the tracker needs index and pts, not pixels


class RemoteSource:
    """`FrameSource` interface; the decoder state lives on one FrameDecoder replica."""

    def __init__(self, decoder: DeploymentHandle, key: str, settings: StreamSettings) -> None:
        self._decoder = decoder.options(session_id=key)
        self.key = key
        self.settings = settings
        self.consumed_seq: int | None = None
        self.started = False

    def accept(self, request: pb.StreamRequest) -> list[VideoFrame]:
        reply = self._decoder.accept.remote(
            self.key, self.settings, request.SerializeToString(), not self.started
        ).result()
        self.started = True
        return self._unpack(reply)

    def finish(self) -> list[VideoFrame]:
        return self._unpack(
            self._decoder.finish.remote(self.key, self.settings, self.started).result()
        )

    def _unpack(self, reply) -> list[VideoFrame]:  # type: ignore[no-untyped-def]
        if reply.error is not None:
            raise StreamError(reply.error)
        self.consumed_seq = reply.consumed_seq
        return reply.value

    def discard(self) -> None:
        """End of stream (any reason): free the remote decoder; fire and forget."""
        self._decoder.close.remote(self.key)


class RemoteTracks:
    """`TrackStage` interface; the tracker state lives on one TrackAggregator replica."""

    def __init__(self, aggregator: DeploymentHandle, key: str, settings: StreamSettings) -> None:
        self._aggregator = aggregator.options(session_id=key)
        self.key = key
        self.settings = settings
        self.started = False

    def step(
        self, frame: VideoFrame, instances: list[TextInstance] | None, dropped: bool = False
    ) -> tuple[FrameResult, list[TrackEvent]]:
        light = VideoFrame(frame.index, frame.pts, _NO_PIXELS)
        out = self._aggregator.step.remote(
            self.key, self.settings, light, instances, dropped, not self.started
        ).result()
        self.started = True
        return out

    def close(self) -> list[TrackEvent]:
        # The driver calls close() on its event loop, where a blocking handle call is refused;
        # one short call per stream, so a helper thread is simpler than an async variant.
        with ThreadPoolExecutor(max_workers=1) as pool:
            call = self._aggregator.close.remote
            return pool.submit(
                lambda: call(self.key, self.settings, self.started).result()
            ).result()


class RaySpotEngine:
    """`SpotEngine` over the TextSpotter deployment.

    Frames carry the prompt *text*, not its embedding: whichever TextSpotter replica spots a
    frame resolves the prompt through the shared cache (Redis), so only one replica in the
    cluster ever runs the text encoder for it. `prompt_embedding` returns that text (or None).
    """

    def __init__(self, spotter: DeploymentHandle) -> None:
        self.spotter = spotter

    async def prompt_embedding(self, prompt: str | None) -> str | None:  # type: ignore[override]
        if not prompt:
            return None
        return await self.spotter.prepare_prompt.remote(prompt)

    async def spot(self, image: np.ndarray, prompt: str | None) -> list[TextInstance]:
        return await self.spotter.spot.remote(image, prompt)


class _RayStream(_Stream):
    def __init__(
        self,
        settings: StreamSettings,
        engine: RaySpotEngine,
        limits: SessionLimits,
        decoder: DeploymentHandle,
        aggregator: DeploymentHandle,
    ) -> None:
        super().__init__(settings, engine, limits)  # type: ignore[arg-type]
        self.source.discard()  # the local decoder the driver opened; decoding happens remotely
        key = uuid.uuid4().hex  # not the client's stream_id: two clients may pick the same
        self.source = RemoteSource(decoder, key, settings)  # type: ignore[assignment]
        self.tracks = RemoteTracks(aggregator, key, settings)  # type: ignore[assignment]


async def run_ray_stream(
    requests: AsyncIterator[pb.StreamRequest],
    engine: RaySpotEngine,
    decoder: DeploymentHandle,
    aggregator: DeploymentHandle,
    limits: SessionLimits | None = None,
    draining: asyncio.Event | None = None,
) -> AsyncIterator[pb.StreamResponse]:
    """`stream_driver.run_stream` with the remote stages (same errors, same responses)."""
    limits = limits or SessionLimits()
    draining = draining or asyncio.Event()
    iterator = aiter(requests)
    first = await anext(iterator, None)
    settings = parse_config(first if first is not None else pb.StreamRequest(), limits)
    stream = _RayStream(settings, engine, limits, decoder, aggregator)
    log.info("%s: opened on Ray (%s, drop policy %s)", settings.label, settings.kind,
             settings.drop_policy)
    yield credits_response(limits.initial_credits, None)
    tasks = [
        asyncio.create_task(stream.read(iterator, draining)),
        asyncio.create_task(stream.work()),
    ]
    supervisor = asyncio.create_task(_supervise(tasks, stream.out))
    try:
        while (item := await stream.out.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        for task in (*tasks, supervisor):
            task.cancel()
        await asyncio.gather(*tasks, supervisor, return_exceptions=True)
    log.info("%s: closed after %d frames (%d dropped)", settings.label, stream.frames_out,
             stream.queue.dropped_count)
    if stream.drained:
        raise StreamDrained(settings, stream.source.consumed_seq)
