"""Run one StreamSpot stream: requests in, responses out, with credits, drops and draining.

The same coroutine serves the embedded grpc.aio server and a Ray Serve front; they differ only
in the `SpotEngine` they pass (a local spotter thread, or a handle to a batched deployment) and
in where the stream's decoder and tracker live (`stages`: here, or on pinned Ray replicas):

    async for response in run_stream(request_iterator, engine, draining=event):
        yield response

Two tasks per stream, joined by a FrameQueue (services/frame_queue.py):
- the reader validates and decodes each message (off the event loop), queues its frames,
  then grants one credit; under drop policy "none" it waits for room first, so a slow spotter
  withholds credits and the client stops sending;
- the worker takes frames in order, spots those the sampler and drop policy left, tracks every
  frame, and emits one FrameResult per frame plus track events; at the end, the track-end events.
Bad input raises StreamError out of the generator; the transport maps it to INVALID_ARGUMENT.
When `draining` is set the reader stops reading, and the frames already received are finished
before `StreamDrained` tells the transport to close the stream (clients resume after
`consumed_seq`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import numpy as np

from pipeline.errors import ClipSpotError
from pipeline.types import FrameResult, TextInstance, TrackEvent, VideoFrame
from services.convert import credits_response, result_response, track_response
from services.frame_queue import FrameQueue, QueuedFrame
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.session import (
    FrameSource,
    Sampler,
    SessionLimits,
    StreamError,
    StreamSettings,
    TrackStage,
    parse_config,
)

log = logging.getLogger("clipspot.stream")


class SpotEngine(Protocol):
    """What a stream needs from the model, wherever the model runs."""

    async def prompt_embedding(self, prompt: str | None) -> np.ndarray | None:
        """The embedding for a custom prompt (cached); None for the default prompt."""
        ...

    async def spot(
        self, image: np.ndarray, prompt_embedding: np.ndarray | None
    ) -> list[TextInstance]:
        """One RGB frame -> its words (track_id None)."""
        ...


class StreamDrained(Exception):
    """The server is shutting down; all frames received so far have been answered."""

    def __init__(self, settings: StreamSettings, consumed_seq: int | None) -> None:
        resume = settings.resume_from if consumed_seq is None else consumed_seq + 1
        super().__init__(f"{settings.label}: server is shutting down; every frame received was "
                         f"answered; reconnect and resume from seq {resume}")
        self.resume_from = resume


_DONE = object()


class FrameSourceLike(Protocol):
    """`session.FrameSource`, or a stand-in whose decoder lives elsewhere (a Ray replica)."""

    consumed_seq: int | None

    def accept(self, request: pb.StreamRequest) -> list[VideoFrame]: ...
    def finish(self) -> list[VideoFrame]: ...
    def discard(self) -> None: ...


class TrackStageLike(Protocol):
    """`session.TrackStage`, or a stand-in whose tracker lives elsewhere (a Ray replica)."""

    def step(
        self, frame: VideoFrame, instances: list[TextInstance] | None, dropped: bool = False
    ) -> tuple[FrameResult, list[TrackEvent]]: ...
    def close(self) -> list[TrackEvent]: ...


# settings -> (source, tracks): where a transport keeps a stream's decoder and tracker.
StageFactory = Callable[[StreamSettings], tuple[FrameSourceLike, TrackStageLike]]


def local_stages(settings: StreamSettings) -> tuple[FrameSourceLike, TrackStageLike]:
    """Decoder and tracker in this process (the embedded server)."""
    return FrameSource(settings), TrackStage(settings)


class _Stream:
    def __init__(
        self,
        settings: StreamSettings,
        engine: SpotEngine,
        limits: SessionLimits,
        stages: StageFactory = local_stages,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.limits = limits
        self.source, self.tracks = stages(settings)
        self.sampler = Sampler(settings.detect_every, settings.max_fps)
        self.queue = FrameQueue(settings.drop_policy, settings.max_queue)
        self.out: asyncio.Queue[object] = asyncio.Queue()
        self.drained = False
        self.frames_in = 0
        self.frames_out = 0

    async def read(
        self, requests: AsyncIterator[pb.StreamRequest], draining: asyncio.Event
    ) -> None:
        try:
            async for request in self._until(requests, draining):
                # Decoding is CPU work: off the loop, so other streams keep flowing meanwhile.
                frames = await asyncio.to_thread(self.source.accept, request)
                seq = self.source.consumed_seq
                await self._enqueue(frames, seq)
                self.out.put_nowait(credits_response(1, seq))
            tail = await asyncio.to_thread(self.source.finish)
            await self._enqueue(tail, self.source.consumed_seq)
        finally:
            self.source.discard()
            await self.queue.close()

    async def _enqueue(self, frames: list, seq: int | None) -> None:
        for frame in frames:
            await self.queue.wait_for_room()
            want = self.sampler.wants(frame)
            await self.queue.put(QueuedFrame(seq=seq or 0, frame=frame, spot=want))
            self.frames_in += 1

    async def _until(
        self, requests: AsyncIterator[pb.StreamRequest], draining: asyncio.Event
    ) -> AsyncIterator[pb.StreamRequest]:
        """The requests, stopping early (between messages) once `draining` is set."""
        drain_wait = asyncio.ensure_future(draining.wait())
        iterator = aiter(requests)
        try:
            while True:
                next_request = asyncio.ensure_future(anext(iterator))
                await asyncio.wait({next_request, drain_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not next_request.done():
                    self.drained = True
                    next_request.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await next_request
                    return
                try:
                    yield next_request.result()
                except StopAsyncIteration:
                    return
        finally:
            drain_wait.cancel()

    async def work(self) -> None:
        try:
            embedding = await self.engine.prompt_embedding(self.settings.prompt)
        except ClipSpotError as err:  # e.g. a prompt the tokenizer cannot take
            raise StreamError(f"{self.settings.label}: config: prompt: {err}") from None
        while (item := await self.queue.get()) is not None:
            instances = None
            if item.spot and not item.dropped:
                instances = await self.engine.spot(item.frame.image, embedding)
            result, events = await asyncio.to_thread(
                self.tracks.step, item.frame, instances, item.dropped
            )
            self.out.put_nowait(result_response(result, item.seq))
            self.frames_out += 1
            for event in events:
                self.out.put_nowait(track_response(event))
        for event in await asyncio.to_thread(self.tracks.close):
            self.out.put_nowait(track_response(event))


async def run_stream(
    requests: AsyncIterator[pb.StreamRequest],
    engine: SpotEngine,
    limits: SessionLimits | None = None,
    draining: asyncio.Event | None = None,
    stages: StageFactory = local_stages,
) -> AsyncIterator[pb.StreamResponse]:
    """Serve one stream. Raises StreamError on bad input, StreamDrained when cut by shutdown.

    `stages` places the stream's decoder and tracker (default: here, in this process)."""
    limits = limits or SessionLimits()
    draining = draining or asyncio.Event()
    iterator = aiter(requests)
    first = await anext(iterator, None)
    settings = parse_config(first if first is not None else pb.StreamRequest(), limits)
    stream = _Stream(settings, engine, limits, stages)
    log.info("%s: opened (%s, drop policy %s)", settings.label, settings.kind,
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


async def _supervise(tasks: list[asyncio.Task], out: asyncio.Queue) -> None:
    """Wait for reader and worker; the first failure cancels the other and is re-raised."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if not t.cancelled() and t.exception() is not None]
        if failed:
            for task in pending:
                task.cancel()
            out.put_nowait(failed[0].exception())
            return
    out.put_nowait(_DONE)
