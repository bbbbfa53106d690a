"""The Ray Serve deployments behind StreamIngress: decoding, spotting, tracking.

- `FrameDecoder`: one `session.FrameSource` (PyAV decoder state) per stream.
- `TextSpotter`: the model. Stateless per stream; `@serve.batch` gathers frames of all streams
  that reach this replica; custom prompts resolve through the shared prompt cache (Redis).
- `TrackAggregator`: one `session.TrackStage` (tracker state) per stream.

Per-stream state is pinned by session-id routing: the ingress calls FrameDecoder and
TrackAggregator with `handle.options(session_id=<stream key>)`, and both deployments use Serve's
`ConsistentHashRouter` with no fallback replica, so every call of one stream lands on the replica
that holds its state (see docs/ray.md for why, and what happens when replicas change).
A call that finds no state for a stream that already started raises `StreamStateLost`; the
ingress ends that stream with UNAVAILABLE and the seq to resume from.
Errors a client caused come back as values (`Reply.error`), not exceptions, so the message the
client sees is exactly the one `session.py` wrote, without a Ray traceback around it.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray import serve
from ray.serve.config import RequestRouterConfig

from pipeline.errors import ClipSpotError
from pipeline.types import FrameResult, TextInstance, TrackEvent, VideoFrame
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.session import FrameSource, StreamSettings, TrackStage

STICKY_ROUTER = RequestRouterConfig(
    request_router_class="ray.serve.experimental.consistent_hash_router.ConsistentHashRouter",
    # No fallback: a stream's state exists on one replica only; another replica cannot help.
    request_router_kwargs={"num_fallback_replicas": 0},
)
STATE_IDLE_S = 600.0  # state of a stream not heard from this long is dropped (ingress died)


class StreamStateLost(Exception):
    """A started stream's state is gone (replica restarted or the hash ring changed)."""


@dataclass
class Reply:
    """A FrameDecoder/TrackAggregator answer: a value, or the client's error message."""

    value: Any = None
    consumed_seq: int | None = None
    error: str | None = None


class StreamStates:
    """Per-stream objects of one replica, keyed by stream key, expired when idle."""

    def __init__(self, idle_s: float = STATE_IDLE_S) -> None:
        self.idle_s = idle_s
        self._items: dict[str, tuple[Any, float]] = {}

    def get(self, key: str, create: Any = None) -> Any:
        """The stream's object; `create()` makes it on the first call, else StreamStateLost."""
        now = time.monotonic()
        if key not in self._items:
            if create is None:
                raise StreamStateLost(f"no state for stream key {key} on this replica")
            self._expire(now)
            self._items[key] = (create(), now)
        obj = self._items[key][0]
        self._items[key] = (obj, now)
        return obj

    def pop(self, key: str) -> Any:
        return self._items.pop(key, (None, 0.0))[0]

    def _expire(self, now: float) -> None:
        for key in [k for k, (_, seen) in self._items.items() if now - seen > self.idle_s]:
            del self._items[key]

    def __len__(self) -> int:
        return len(self._items)


def replica_id() -> str:
    return serve.get_replica_context().replica_id.unique_id


@serve.deployment(
    name="FrameDecoder",
    max_ongoing_requests=64,
    ray_actor_options={"num_cpus": 0.5},
    request_router_config=STICKY_ROUTER,
    graceful_shutdown_timeout_s=30,
)
class FrameDecoder:
    """Decodes each stream's messages into numbered VideoFrames (PyAV / image decoders)."""

    def __init__(self) -> None:
        self.states = StreamStates()

    async def accept(
        self, key: str, settings: StreamSettings, request: bytes, first: bool
    ) -> Reply:
        source = self.states.get(key, (lambda: FrameSource(settings)) if first else None)
        message = pb.StreamRequest.FromString(request)
        try:
            frames = await asyncio.to_thread(source.accept, message)
        except ClipSpotError as err:
            self.close_stream(key)
            return Reply(error=str(err))
        return Reply(frames, source.consumed_seq)

    async def finish(self, key: str, settings: StreamSettings, started: bool) -> Reply:
        """Flush the decoder at the end of the stream and forget the stream."""
        if not started:
            return Reply([], None)  # a stream with no message never opened a decoder
        source = self.states.get(key)
        self.states.pop(key)
        try:
            return Reply(await asyncio.to_thread(source.finish), source.consumed_seq)
        except ClipSpotError as err:
            return Reply(error=str(err))

    async def close(self, key: str) -> None:
        self.close_stream(key)

    def close_stream(self, key: str) -> None:
        source = self.states.pop(key)
        if source is not None:
            source.discard()  # stops the demuxer thread of a stream that ended early

    async def open_streams(self) -> tuple[str, int]:
        return replica_id(), len(self.states)


@serve.deployment(
    name="TrackAggregator",
    max_ongoing_requests=64,
    ray_actor_options={"num_cpus": 0.25},
    request_router_config=STICKY_ROUTER,
    graceful_shutdown_timeout_s=30,
)
class TrackAggregator:
    """Runs each stream's tracker over its frames in order (pixels never travel here)."""

    def __init__(self) -> None:
        self.states = StreamStates()

    async def step(
        self,
        key: str,
        settings: StreamSettings,
        frame: VideoFrame,
        instances: list[TextInstance] | None,
        dropped: bool,
        first: bool,
    ) -> tuple[FrameResult, list[TrackEvent]]:
        tracks = self.states.get(key, (lambda: TrackStage(settings)) if first else None)
        return tracks.step(frame, instances, dropped)

    async def close(self, key: str, settings: StreamSettings, started: bool) -> list[TrackEvent]:
        """The final track-end events; forgets the stream."""
        tracks = self.states.get(key, (lambda: TrackStage(settings)) if not started else None)
        self.states.pop(key)
        return tracks.close()

    async def open_streams(self) -> tuple[str, int]:
        return replica_id(), len(self.states)


@dataclass
class SpotterStats:
    replica: str
    frames: int = 0
    batches: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)
    cache: dict[str, int] = field(default_factory=dict)


@serve.deployment(
    name="TextSpotter",
    max_ongoing_requests=32,  # >= max_batch_size: Serve forms batches from in-flight requests
    ray_actor_options={"num_cpus": 1, "num_gpus": 0},
    user_config={"max_batch_size": 8, "batch_wait_timeout_s": 0.01},
    graceful_shutdown_timeout_s=30,
)
class TextSpotter:
    """The spotter model, batching frames across streams; prompts via the shared cache."""

    def __init__(self) -> None:
        from pipeline.spotter import Spotter
        from services.prompt_cache import make_prompt_cache
        from services.threads import pin_threads

        pin_threads(_torch_threads())
        self.spotter = Spotter.load(
            os.environ.get("CLIPSPOT_WEIGHTS") or None,
            device=os.environ.get("CLIPSPOT_DEVICE", "cpu"),
            reader=os.environ.get("CLIPSPOT_READER") or None,
            threads=_torch_threads(),
        )
        self.cache = make_prompt_cache(
            os.environ.get("CLIPSPOT_REDIS_URL") or None, embed_dim=self.spotter.embed_dim
        )
        # One model thread: torch already uses the pinned cores; the event loop stays free.
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spotter")
        self._prompt_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prompt")
        self.stats = SpotterStats(replica_id())

    def reconfigure(self, user_config: dict) -> None:
        """Batch knobs from the Serve config (`user_config`), changeable without a restart."""
        self.spot_batch.set_max_batch_size(int(user_config.get("max_batch_size", 8)))
        self.spot_batch.set_batch_wait_timeout_s(
            float(user_config.get("batch_wait_timeout_s", 0.01))
        )

    async def model_checksum(self) -> str:
        """Spotter.checksum: the weights file and the reader this replica answers with."""
        return self.spotter.checksum

    async def prepare_prompt(self, prompt: str | None) -> str | None:
        """Resolve a stream's prompt once at stream start; None means the default prompt."""
        if not prompt or prompt == self.spotter.default_prompt:
            return None
        await self._embedding(prompt)
        return prompt

    async def spot(self, image: np.ndarray, prompt: str | None) -> list[TextInstance]:
        return await self.spot_batch((image, prompt))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def spot_batch(
        self, items: list[tuple[np.ndarray, str | None]]
    ) -> list[list[TextInstance]]:
        size = len(items)
        self.stats.batch_sizes[size] = self.stats.batch_sizes.get(size, 0) + 1
        results: list[list[TextInstance] | None] = [None] * size
        groups: dict[str | None, list[int]] = {}
        for i, (_, prompt) in enumerate(items):
            groups.setdefault(prompt, []).append(i)
        for prompt, indices in groups.items():  # almost always one prompt per batch
            embedding = None if prompt is None else await self._embedding(prompt)
            images = [items[i][0] for i in indices]
            loop = asyncio.get_running_loop()
            spotted = await loop.run_in_executor(self._model_thread, self._spot, images, embedding)
            for i, found in zip(indices, spotted, strict=True):
                results[i] = found
        return results  # type: ignore[return-value]

    def _spot(
        self, images: list[np.ndarray], embedding: np.ndarray | None
    ) -> list[list[TextInstance]]:
        self.stats.batches += 1
        self.stats.frames += len(images)
        if embedding is None:
            return self.spotter.spot(images)
        return self.spotter.spot(images, prompt_embedding=embedding)

    async def _embedding(self, prompt: str) -> np.ndarray:
        from services.prompt_cache import PromptKey

        key = PromptKey(self.spotter.weights_checksum, prompt, self.spotter.context_length)
        loop = asyncio.get_running_loop()
        # Its own thread: a wait on another replica's lock must not hold up spotting.
        return await loop.run_in_executor(
            self._prompt_thread,
            self.cache.get_or_compute,
            key,
            lambda: self.spotter.encode_prompt(prompt),
        )

    async def get_stats(self) -> SpotterStats:
        self.stats.cache = self.cache.stats.as_dict()
        return self.stats


def _torch_threads() -> int:
    """CLIPSPOT_TORCH_THREADS, else the CPUs Ray gave this replica (at least one)."""
    if os.environ.get("CLIPSPOT_TORCH_THREADS"):
        return max(1, int(os.environ["CLIPSPOT_TORCH_THREADS"]))
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0)
    return max(1, int(cpus))
