"""One StreamSpot stream, the same in both modes: payloads in, results and track events out.

The stream's whole state lives here, with the call: its decoder, its queue, its VideoRunner
(keyframes, motion following, read policy, tracker). Only the model is shared, behind a
`SpotEngine` (services/engines.py): local in the embedded server, a stateless Ray deployment at
scale. Three tasks per stream:

    receive: checks each message as it arrives (credit, order, kind) -> inbox
    decode:  decodes in order (off the loop) -> FrameQueue (drop policy) -> grants one credit
    work:    the runner, on the stream's own thread, frame by frame -> AnsweredFrame, TrackEvent

Under drop policy "none" the decoder waits for room before granting, so a slow model withholds
credits and the client stops; a client that sends without a credit ends with CreditsExceeded.
Errors end the stream at once, ahead of results still queued. On shutdown (`Drain`) the stream
stops reading, answers what it can until the grace nearly ends, sends its tracks' end events
and ends with StreamDrained naming the frame to resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from pipeline.errors import ClipSpotError
from pipeline.runner import RunnerConfig, VideoRunner
from pipeline.types import FrameResult, TrackEvent, VideoFrame
from pipeline.video_job import runner_config
from services.engines import EngineSpotter, SpotEngine
from services.frame_queue import FrameQueue, QueuedFrame
from services.frame_source import FrameSource
from services.metrics import Recorder, StreamMeter
from services.stream_types import (
    AnsweredFrame,
    Credits,
    CreditsExceeded,
    Payload,
    SessionLimits,
    StreamDrained,
    StreamError,
    StreamOutput,
    StreamSettings,
)

log = logging.getLogger("clipspot.stream")

FINISH_S = 2.0  # of the drain grace, kept for end events and the resume point
# Every stream whose state is still in memory (weak: it holds nothing alive). A stream that has
# ended, however it ended, must leave it: tests check that a dead connection frees its stream.
LIVE_STREAMS: weakref.WeakSet[_Stream] = weakref.WeakSet()


class Drain:
    """Server shutdown as the streams see it: stop reading at once; stop answering (and send
    end events and resume points) `FINISH_S` before the grace ends."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.expired = asyncio.Event()

    def begin(self, grace_s: float) -> None:
        self.started.set()
        asyncio.get_running_loop().call_later(max(0.0, grace_s - FINISH_S), self.expired.set)


def stream_runner_config(settings: StreamSettings, default: RunnerConfig) -> RunnerConfig:
    """The stream's keyframe mode: the server's default, or what its Sampling asks for
    (detect_every 1: every frame; k: at most k apart), built as `clipspot spot` builds it."""
    keyframes = "fixed" if settings.fixed_keyframes else "adaptive"
    if settings.detect_every >= 1:
        config = runner_config(settings.detect_every, keyframes,
                               every_frame=settings.detect_every == 1)
    else:
        config = replace(default, adaptive=default.adaptive and keyframes == "adaptive")
    gap = 1.0 / settings.max_fps if settings.max_fps > 0 else 0.0
    tracker = replace(default.tracker, first_id=settings.first_track_id)
    return replace(config, min_keyframe_gap_s=gap, tracker=tracker)


class _Stream:
    def __init__(
        self,
        settings: StreamSettings,
        engine: SpotEngine,
        limits: SessionLimits,
        runner: RunnerConfig,
        drain: Drain,
        meter: StreamMeter,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.drain = drain
        self.meter = meter
        self.queued_at: deque[float] = deque()  # perf_counter per queued frame, in order
        self.source = FrameSource(settings)
        self.queue = FrameQueue(settings.drop_policy, settings.max_queue)
        self.inbox: asyncio.Queue[Payload | None] = asyncio.Queue()
        self.out: asyncio.Queue[StreamOutput] = asyncio.Queue()
        self.granted = limits.initial_credits
        self.received = 0
        self.read_all = False  # the client half-closed: nothing to resume
        self.cut = False  # the drain grace ended with frames unanswered
        self.next_frame = max(settings.first_frame, settings.skip_frames)
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream")
        spotter = EngineSpotter(engine, settings.prompt, asyncio.get_running_loop())
        self.runner = VideoRunner(spotter, runner, source=settings.stream_id)
        LIVE_STREAMS.add(self)

    async def receive(self, payloads: AsyncIterator[Payload]) -> None:
        async for payload in _until(payloads, self.drain.started):
            self.received += 1
            if self.received > self.granted:
                raise CreditsExceeded(
                    f"{self.settings.label} seq {payload.seq}: sent without a credit "
                    f"({self.granted} granted, this is message {self.received}); "
                    "send one message per credit"
                )
            self.source.check(payload)
            self.inbox.put_nowait(payload)
        self.read_all = not self.drain.started.is_set()
        self.inbox.put_nowait(None)

    async def decode(self) -> None:
        try:
            while (payload := await self.inbox.get()) is not None:
                # Decoding is CPU work: off the loop, so other streams keep flowing meanwhile.
                frames = await asyncio.to_thread(self.source.decode, payload)
                await self._enqueue(frames, payload.seq)
                self.granted += 1
                self.out.put_nowait(Credits(1, payload.seq))
            if self.read_all:  # a drained stream resumes; its partial bytes are not flushed
                tail = await asyncio.to_thread(self.source.finish)
                await self._enqueue(tail, self.source.consumed_seq or 0)
        finally:
            self.source.discard()
            await self.queue.close()

    async def _enqueue(self, frames: list[VideoFrame], seq: int) -> None:
        for frame in frames:
            await self.queue.wait_for_room()
            await self.queue.put(QueuedFrame(seq=seq, frame=frame))
            self.queued_at.append(time.perf_counter())
            self.meter.decoded(len(self.queue), self.queue.dropped_count)

    async def work(self) -> None:
        try:
            await self.engine.check_prompt(self.settings.prompt)
        except ClipSpotError as err:  # e.g. a prompt the tokenizer cannot take
            raise StreamError(f"{self.settings.label}: config: prompt: {err}") from None
        loop = asyncio.get_running_loop()
        while (item := await self._next_item()) is not None:
            result, events = await loop.run_in_executor(self.thread, self._step, item)
            self.next_frame = result.frame + 1
            self.out.put_nowait(AnsweredFrame(result, item.seq))
            self.meter.answered(time.perf_counter() - self.queued_at.popleft(), len(self.queue),
                                self.runner.words_read, len(self.runner.tracker.live_track_ids),
                                self.runner.frames_spotted)
            for event in events:
                self.out.put_nowait(event)
        for event in await loop.run_in_executor(self.thread, self.runner.finish):
            self.out.put_nowait(event)

    async def _next_item(self) -> QueuedFrame | None:
        """The next frame, or None at the end of the stream or when the drain grace is up."""
        get = asyncio.ensure_future(self.queue.get())
        expired = asyncio.ensure_future(self.drain.expired.wait())
        try:
            await asyncio.wait({get, expired}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            expired.cancel()
            if not get.done():
                get.cancel()
        if not get.cancelled():
            return get.result()
        self.cut = True
        return None

    def _step(self, item: QueuedFrame) -> tuple[FrameResult, list[TrackEvent]]:
        if item.dropped:
            result = self.runner.track_frame(item.frame, None, dropped=True)
        else:
            result = self.runner.step(item.frame)
        return result, self.runner.take_events()

    def resume_point(self, reason: str = "server is shutting down") -> StreamDrained:
        next_seq = None
        if self.settings.payload_kind == "frame":  # one frame per message
            next_seq = self.settings.resume_from + self.next_frame - self.settings.first_frame
        return StreamDrained(self.settings, self.next_frame, next_seq, reason)


async def run_stream(
    settings: StreamSettings,
    payloads: AsyncIterator[Payload],
    engine: SpotEngine,
    limits: SessionLimits,
    runner: RunnerConfig,
    drain: Drain,
    meter: StreamMeter | None = None,
) -> AsyncIterator[StreamOutput]:
    """Serve one stream. Raises StreamError (incl. CreditsExceeded) on bad input, StreamDrained
    when cut by shutdown. `runner` is the server's default keyframe mode; `meter` records the
    stream's metrics (services/metrics.py; the caller closes it)."""
    meter = meter or Recorder().stream(settings.stream_id, settings.drop_policy)
    stream = _Stream(settings, engine, limits, stream_runner_config(settings, runner), drain, meter)
    log.info("%s: opened (%s, drop policy %s)", settings.label, settings.kind,
             settings.drop_policy)
    yield Credits(limits.initial_credits, None)
    tasks = [
        asyncio.create_task(stream.receive(payloads)),
        asyncio.create_task(stream.decode()),
        asyncio.create_task(stream.work()),
    ]
    outcome = asyncio.create_task(_outcome(tasks, main=tasks[-1]))
    get: asyncio.Future | None = None
    try:
        while True:
            get = asyncio.ensure_future(stream.out.get())
            await asyncio.wait({get, outcome}, return_when=asyncio.FIRST_COMPLETED)
            if get.done():
                yield get.result()
                continue
            get.cancel()
            failure = outcome.result()
            if isinstance(failure, ClipSpotError) and not isinstance(failure, StreamError):
                # The model side failed (e.g. no TextSpotter replica for ~30 s): not the
                # client's fault, and nothing is lost by resuming.
                raise stream.resume_point(f"the model is unavailable ({failure})")
            if failure is not None:
                raise failure  # at once: queued results are not waited for
            while not stream.out.empty():
                yield stream.out.get_nowait()
            break
    except (asyncio.CancelledError, GeneratorExit):
        # The call is gone: the client cancelled, or keepalive found its connection dead
        # (grpc.aio cancels the handler, or closes this generator when it waited in a write).
        # One line, no traceback; the finally below frees the stream.
        log.info("%s: cancelled after frame %d (the client went away or its connection died)",
                 settings.label, stream.next_frame - 1)
        raise
    finally:
        for task in (*tasks, outcome, *([get] if get is not None else [])):
            task.cancel()
        await asyncio.gather(*tasks, outcome, return_exceptions=True)
        stream.thread.shutdown(wait=False)
    log.info("%s: closed after frame %d (%d dropped)", settings.label, stream.next_frame - 1,
             stream.queue.dropped_count)
    if stream.cut or not stream.read_all:
        raise stream.resume_point()


async def _outcome(tasks: list[asyncio.Task], main: asyncio.Task) -> BaseException | None:
    """None once `main` (the worker) has finished; the first failure of any task, at once.
    Either way the other tasks are cancelled (after a drain cut they may wait forever)."""
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    return task.exception()
            if main in done:
                return None
        return None
    finally:
        for task in pending:
            task.cancel()


async def _until(
    payloads: AsyncIterator[Payload], stop: asyncio.Event
) -> AsyncIterator[Payload]:
    """The payloads, stopping early (between messages) once `stop` is set."""
    stop_wait = asyncio.ensure_future(stop.wait())
    iterator = aiter(payloads)
    next_payload: asyncio.Future | None = None
    try:
        while not stop.is_set():
            next_payload = asyncio.ensure_future(anext(iterator))
            await asyncio.wait({next_payload, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not next_payload.done():
                return
            try:
                payload = next_payload.result()
            except StopAsyncIteration:
                return
            next_payload = None
            yield payload
    finally:
        stop_wait.cancel()
        if next_payload is not None:  # stopped (drain, error) while a message was awaited
            next_payload.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await next_payload
