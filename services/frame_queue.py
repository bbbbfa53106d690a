"""The per-stream queue between decoding and the stream's runner: order kept, drop policy applied.

Every decoded frame enters the queue and leaves it in order, so every frame gets exactly one
result. Frames that still hold their pixels count towards the bound (`max_waiting`); when the
client sends faster than the server keeps up:

- "none": `wait_for_room()` blocks the decoder, so no credit is granted and the client stops.
- "drop_oldest": the oldest waiting frame is marked dropped (its pixels are released at once);
  it still leaves the queue in its place and is answered with the tracks carried, flagged dropped.
- "keep_latest": every waiting frame but the newest is dropped, so the stream catches up at once.

The bound is frames, not keyframes: between keyframes a frame costs the runner ~2 ms (motion),
a keyframe ~100 ms, so a bound of a few frames absorbs one keyframe's delay at 30 fps without
dropping; a bound of one would drop most frames (measured: 194 of 240 at 30 fps, 640x360).

Transport-independent: asyncio only, no gRPC.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import numpy as np

from pipeline.types import VideoFrame
from services.stream_types import DROP_POLICIES, DropPolicy

# Stands in for a dropped frame's pixels, so they are freed while the frame waits its turn.
_NO_IMAGE = np.zeros((0, 0, 3), dtype=np.uint8)


@dataclass
class QueuedFrame:
    """A decoded frame on its way to the runner.

    seq: the request message that completed the frame. dropped: the drop policy skipped it;
    then `frame.image` is released and the runner carries the tracks to it.
    """

    seq: int
    frame: VideoFrame
    dropped: bool = False


class FrameQueue:
    """An ordered queue with a bound on frames waiting with their pixels."""

    def __init__(self, policy: DropPolicy, max_waiting: int) -> None:
        if policy not in DROP_POLICIES:
            raise ValueError(f"unknown drop policy {policy!r}")
        self.policy = policy
        self.max_waiting = max(1, max_waiting)
        self.dropped_count = 0
        self._items: deque[QueuedFrame] = deque()
        self._waiting = 0  # items not dropped
        self._closed = False
        self._changed = asyncio.Condition()

    @property
    def waiting(self) -> int:
        return self._waiting

    def __len__(self) -> int:
        return len(self._items)

    async def wait_for_room(self) -> None:
        """Policy "none": return once another frame may wait."""
        if self.policy != "none":
            return
        async with self._changed:
            await self._changed.wait_for(lambda: self._waiting < self.max_waiting)

    async def put(self, item: QueuedFrame) -> None:
        async with self._changed:
            if self._closed:
                raise RuntimeError("put on a closed FrameQueue")
            self._items.append(item)
            if not item.dropped:
                self._waiting += 1
                if self.policy != "none":
                    self._drop_overflow()
            self._changed.notify_all()

    def _drop_overflow(self) -> None:
        # Oldest first: a live feed cares about what is on screen now.
        if self._waiting <= self.max_waiting:
            return
        keep = 1 if self.policy == "keep_latest" else self.max_waiting
        for queued in self._items:
            if self._waiting <= keep:
                return
            if not queued.dropped:
                queued.dropped = True
                queued.frame = VideoFrame(queued.frame.index, queued.frame.pts, _NO_IMAGE)
                self._waiting -= 1
                self.dropped_count += 1

    async def close(self) -> None:
        """No more frames will be put; `get` returns None once the queue is empty."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    async def get(self) -> QueuedFrame | None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._items or self._closed)
            if not self._items:
                return None
            item = self._items.popleft()
            if not item.dropped:
                self._waiting -= 1
            self._changed.notify_all()
            return item
