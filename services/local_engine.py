"""The embedded server's SpotEngine: one Spotter in this process, shared by every stream.

All model work runs on one dedicated thread, so streams never run torch concurrently (that
would only oversubscribe the cores torch already uses) and the event loop stays free for I/O.
Frames from different streams that wait at the same moment are spotted in one `Spotter.spot`
call (up to `max_batch`, same prompt and frame size only): cross-stream batching without added
latency, because a batch is only what has already queued up while the previous one ran.
Custom prompts go through the prompt cache (services/prompt_cache.py): in-process here, Redis
when the server is given a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pipeline.spotter import Spotter
from pipeline.types import TextInstance
from services.prompt_cache import PromptCache, PromptKey, make_prompt_cache


@dataclass
class _Job:
    image: np.ndarray
    embedding: np.ndarray | None
    done: asyncio.Future


class LocalEngine:
    """Spotter + prompt cache behind the async `SpotEngine` interface of stream_driver."""

    def __init__(
        self, spotter: Spotter, cache: PromptCache | None = None, max_batch: int = 4
    ) -> None:
        self.spotter = spotter
        self.cache = cache or make_prompt_cache(None)
        self.max_batch = max(1, max_batch)
        self.batches = 0  # spot calls made (for logs and the bench)
        self.frames = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spotter")
        self._jobs: asyncio.Queue[_Job] | None = None
        self._loop_task: asyncio.Task | None = None

    async def prompt_embedding(self, prompt: str | None) -> np.ndarray | None:
        if not prompt or prompt == self.spotter.default_prompt:
            return None  # the checkpoint's own embedding; no text encoder needed
        key = PromptKey(self.spotter.weights_checksum, prompt, self.spotter.context_length)

        def compute() -> np.ndarray:
            return self.spotter.encode_prompt(prompt)

        return await self._run(self.cache.get_or_compute, key, compute)

    async def spot(
        self, image: np.ndarray, prompt_embedding: np.ndarray | None
    ) -> list[TextInstance]:
        if self._jobs is None:
            self._jobs = asyncio.Queue()
            self._loop_task = asyncio.create_task(self._batch_loop(self._jobs))
        done = asyncio.get_running_loop().create_future()
        self._jobs.put_nowait(_Job(image, prompt_embedding, done))
        return await done

    async def spot_images(
        self, images: list[np.ndarray], prompt_embedding: np.ndarray | None
    ) -> list[list[TextInstance]]:
        """A unary request's images, spotted together on the model thread."""
        return await self._run(self._spot_batch, images, prompt_embedding)

    async def _batch_loop(self, jobs: asyncio.Queue[_Job]) -> None:
        while True:
            batch = [await jobs.get()]
            while not jobs.empty() and len(batch) < self.max_batch:
                batch.append(jobs.get_nowait())
            # A stream that ended while its frame waited (client gone, error) needs no answer.
            batch = [job for job in batch if not job.done.done()]
            # One spot call per prompt and frame size present (usually one): the model pads a
            # batch to its largest image, and padding would change a smaller frame's result.
            for group in _groups(batch):
                images = [job.image for job in group]
                try:
                    results = await self._run(self._spot_batch, images, group[0].embedding)
                except Exception as err:  # a bug in the model: fail those frames' streams
                    for job in group:
                        if not job.done.done():
                            job.done.set_exception(err)
                    continue
                for job, result in zip(group, results, strict=True):
                    if not job.done.done():  # the stream may have ended meanwhile
                        job.done.set_result(result)

    def _spot_batch(
        self, images: list[np.ndarray], embedding: np.ndarray | None
    ) -> list[list[TextInstance]]:
        self.batches += 1
        self.frames += len(images)
        if embedding is None:
            return self.spotter.spot(images)
        return self.spotter.spot(images, prompt_embedding=embedding)

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        self._executor.shutdown(wait=True)
        self.cache.close()


def _groups(batch: list[_Job]) -> list[list[_Job]]:
    groups: dict[tuple, list[_Job]] = {}
    for job in batch:
        groups.setdefault((id(job.embedding), job.image.shape), []).append(job)
    return list(groups.values())
