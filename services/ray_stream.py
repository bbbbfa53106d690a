"""The StreamIngress side of one stream on Ray Serve: stream_driver's state machine, remote stages.

The embedded server and Ray run the same `services/stream_driver.run_stream` (credits, sampling,
drop policy, draining, ordering). Only three things differ here, each a drop-in for what the
driver uses locally; `remote_stages` is the `StageFactory` that hands the first two to it:

- `RemoteSource` stands in for `session.FrameSource`: decoding happens on the FrameDecoder
  replica that holds this stream's decoder (session-id routing on the stream key);
- `RemoteTracks` stands in for `session.TrackStage`: tracking happens on the TrackAggregator
  replica that holds this stream's tracker;
- `RaySpotEngine` is the `SpotEngine`: frames go to the batched TextSpotter deployment.

The driver calls every FrameSource/TrackStage method (except `discard`) through
`asyncio.to_thread`, so the two stand-ins block on their handle calls from worker threads
(allowed; the Serve router runs on its own loop); `discard` only fires a call.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import numpy as np
from ray.serve.handle import DeploymentHandle

from pipeline.types import FrameResult, TextInstance, TrackEvent, VideoFrame
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.session import SessionLimits, StreamError, StreamSettings
from services.stream_driver import StageFactory, run_stream

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
        return self._aggregator.close.remote(self.key, self.settings, self.started).result()


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


def remote_stages(decoder: DeploymentHandle, aggregator: DeploymentHandle) -> StageFactory:
    """A `StageFactory` placing each stream's decoder and tracker on the Ray deployments."""

    def stages(settings: StreamSettings) -> tuple[RemoteSource, RemoteTracks]:
        key = uuid.uuid4().hex  # not the client's stream_id: two clients may pick the same
        return RemoteSource(decoder, key, settings), RemoteTracks(aggregator, key, settings)

    return stages


def run_ray_stream(
    requests: AsyncIterator[pb.StreamRequest],
    engine: RaySpotEngine,
    decoder: DeploymentHandle,
    aggregator: DeploymentHandle,
    limits: SessionLimits | None = None,
    draining: asyncio.Event | None = None,
) -> AsyncIterator[pb.StreamResponse]:
    """`stream_driver.run_stream` with the remote stages (same errors, same responses).

    Returns the driver's own generator (no wrapper), so closing it cancels the stream at once."""
    return run_stream(
        requests, engine, limits, draining,  # type: ignore[arg-type]  # prompt text, see above
        stages=remote_stages(decoder, aggregator),
    )
