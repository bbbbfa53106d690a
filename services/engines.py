"""Where the model runs for the services, and the bridge that lets a stream's runner use it.

A `SpotEngine` is the model shared by every stream of a server: `LocalEngine` (one Spotter in
this process: the embedded server) or `RayEngine` (awaited calls to the stateless TextSpotter
deployment: services/ray_spotter.py). Both batch detection across streams with the one batcher
(pipeline/batcher.py). Each stream runs its own `VideoRunner` (keyframes, motion, read policy,
tracker) on its own thread; `EngineSpotter` gives that runner the `detect`/`words` calls it
expects and forwards them to the engine on the event loop:

    stream thread: runner.step(frame) -> EngineSpotter.detect -> engine.detect (event loop)
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from pipeline.batcher import Batcher
from pipeline.errors import ClipSpotError
from pipeline.model.postprocess import Detection
from pipeline.spotter import Spotter
from pipeline.types import TextInstance
from services.prompt_cache import PromptCache, PromptKey, make_prompt_cache


class SpotEngine(Protocol):
    """The model as the streams see it, wherever it runs. `prompt` None: the default."""

    async def model_checksum(self) -> str:
        """`Spotter.checksum` of the model answering (weights + reader)."""
        ...

    async def check_prompt(self, prompt: str | None) -> None:
        """Prepare a custom prompt at stream start; ClipSpotError if it cannot be used."""
        ...

    async def detect(self, image: np.ndarray, prompt: str | None) -> list[Detection]: ...

    async def words(
        self, image: np.ndarray, detections: Sequence[Detection]
    ) -> list[TextInstance | None]: ...

    async def close(self) -> None: ...


async def spot_image(
    engine: SpotEngine, image: np.ndarray, prompt: str | None
) -> list[TextInstance]:
    """One still image: detect, read, keep the words `Spotter.spot` keeps."""
    found = await engine.detect(image, prompt)
    return [w for w in await engine.words(image, found) if w is not None]


class LocalEngine:
    """One Spotter in this process, shared by every stream.

    All model work runs on one dedicated thread, so streams never run torch concurrently (that
    would only oversubscribe the cores torch already uses) and the event loop stays free. Custom
    prompts go through the prompt cache: in-process, or Redis when the server is given a URL.
    """

    def __init__(
        self, spotter: Spotter, cache: PromptCache | None = None, max_batch: int = 4
    ) -> None:
        self.spotter = spotter
        self.cache = cache or make_prompt_cache(None)
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spotter")
        self.batcher = Batcher(self._detect_group, self._model_thread, max_batch)

    async def model_checksum(self) -> str:
        return self.spotter.checksum

    async def check_prompt(self, prompt: str | None) -> None:
        await self._on_model_thread(self._embedding, prompt)

    async def detect(self, image: np.ndarray, prompt: str | None) -> list[Detection]:
        return await self.batcher.submit((prompt, image.shape), image)

    async def words(
        self, image: np.ndarray, detections: Sequence[Detection]
    ) -> list[TextInstance | None]:
        return await self._on_model_thread(self.spotter.words, image, detections)

    def _detect_group(self, key: Hashable, images: list[np.ndarray]) -> list[list[Detection]]:
        prompt = key[0]  # type: ignore[index]
        return self.spotter.detect(images, self._embedding(prompt))

    def _embedding(self, prompt: str | None) -> np.ndarray | None:
        if not prompt or prompt == self.spotter.default_prompt:
            return None  # the checkpoint's own embedding; no text encoder needed
        key = PromptKey(self.spotter.weights_checksum, prompt, self.spotter.context_length)
        return self.cache.get_or_compute(key, lambda: self.spotter.encode_prompt(prompt))

    async def _on_model_thread(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, fn, *args)

    async def close(self) -> None:
        await self.batcher.close()
        self._model_thread.shutdown(wait=True)
        self.cache.close()


class EngineSpotter:
    """The `detect`/`words` a stream's VideoRunner calls, answered by the shared engine.

    The runner runs on the stream's own thread; each call hands a coroutine to the event loop
    and waits for it there, so detection still batches across streams in the engine.
    """

    def __init__(
        self, engine: SpotEngine, prompt: str | None, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.engine = engine
        self.prompt = prompt
        self.loop = loop

    def detect(
        self, images: Sequence[np.ndarray], prompt_embedding: object = None
    ) -> list[list[Detection]]:
        # The stream's prompt was fixed at stream start; the runner's argument is unused.
        return [self._wait(self.engine.detect(image, self.prompt)) for image in images]

    def words(
        self, image: np.ndarray, detections: Sequence[Detection]
    ) -> list[TextInstance | None]:
        if not detections:
            return []
        return self._wait(self.engine.words(image, list(detections)))

    def _wait(self, coroutine):  # type: ignore[no-untyped-def]
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except asyncio.CancelledError:
            raise ClipSpotError("the model was shut down while this frame waited") from None
