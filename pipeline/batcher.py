"""The one batcher: which frames may share a detector call, and the queue that forms batches.

The detector pads a batch to its largest image, and padding changes a smaller image's result
(the network sees the zero border; `tests/test_batcher.py` shows it). So frames share a call only
when they have the same size and the same prompt, and a frame's words never depend on which
other frames (other streams') were batched with it. Every caller goes through here:

    for indices in same_size_groups(images, prompts):      # `clipspot spot` on a folder
        spotter.detect([images[i] for i in indices], ...)

    batcher = Batcher(run_group, executor, max_batch=8)    # the embedded engine, a Ray replica
    detections = await batcher.submit((prompt, image.shape), image)

`Batcher` forms a batch from what has queued up while the previous call ran (no added wait
when idle, larger batches under load), then makes one call per key present, in arrival order.
It is asyncio only: the services run it on their event loop, the model on `executor`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np


def same_size_groups(
    images: Sequence[np.ndarray], prompts: Sequence[Hashable] | None = None
) -> list[list[int]]:
    """Indices of images that may share one detector call (same shape, same prompt), each
    group in input order, groups ordered by their first member."""
    keys = [
        (None if prompts is None else prompts[i], tuple(image.shape))
        for i, image in enumerate(images)
    ]
    return group_by_key(keys)


def group_by_key(keys: Sequence[Hashable]) -> list[list[int]]:
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return list(groups.values())


# run_group(key, items) -> one result per item, in order; runs on the executor.
RunGroup = Callable[[Hashable, list[Any]], list[Any]]


@dataclass
class _Job:
    key: Hashable
    item: Any
    done: asyncio.Future


class Batcher:
    """Gathers items submitted from many coroutines into grouped calls of `run_group`."""

    def __init__(self, run_group: RunGroup, executor: Executor, max_batch: int = 8) -> None:
        self.run_group = run_group
        self.executor = executor
        self.max_batch = max(1, max_batch)
        self.calls = 0  # run_group calls made (logs, stats, the benchmark)
        self.items = 0
        self.sizes: dict[int, int] = {}  # batch size -> how many calls had it
        self._jobs: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None

    async def submit(self, key: Hashable, item: Any) -> Any:
        """Queue one item; returns its result once its group has run."""
        if self._jobs is None:
            self._jobs = asyncio.Queue()
            self._task = asyncio.create_task(self._loop(self._jobs))
        done = asyncio.get_running_loop().create_future()
        self._jobs.put_nowait(_Job(key, item, done))
        return await done

    async def _loop(self, jobs: asyncio.Queue[_Job]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await jobs.get()]
            while not jobs.empty() and len(batch) < self.max_batch:
                batch.append(jobs.get_nowait())
            # A caller that went away while its item waited (stream ended) needs no answer.
            batch = [job for job in batch if not job.done.done()]
            for indices in group_by_key([job.key for job in batch]):
                group = [batch[i] for i in indices]
                self.calls += 1
                self.items += len(group)
                self.sizes[len(group)] = self.sizes.get(len(group), 0) + 1
                try:
                    results = await loop.run_in_executor(
                        self.executor, self.run_group, group[0].key, [j.item for j in group]
                    )
                except Exception as err:
                    _settle(group, error=err)
                    continue
                _settle(group, results=results)

    async def close(self) -> None:
        """Stop forming batches; callers still waiting get CancelledError."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._jobs is not None and not self._jobs.empty():
            self._jobs.get_nowait().done.cancel()


def _settle(
    group: list[_Job], results: list[Any] | None = None, error: BaseException | None = None
) -> None:
    for i, job in enumerate(group):
        if job.done.done():  # the caller was cancelled meanwhile
            continue
        if error is not None:
            job.done.set_exception(error)
        else:
            job.done.set_result(results[i])  # type: ignore[index]
