"""The model on Ray Serve: the stateless TextSpotter deployment, and the engine that calls it.

`TextSpotter` holds no per-stream state, so Serve may add, remove or restart its replicas at any
time (autoscaling on ongoing requests, GPU or CPU, fractional GPUs allowed): every call carries
what it needs (the frame, the prompt text). Detection batches across streams with the one
batcher (pipeline/batcher.py: same frame size and prompt per model call); custom prompts
resolve through the shared prompt cache (Redis), so only one replica in the cluster runs the
text encoder for a prompt.

`RayEngine` is the `SpotEngine` the StreamIngress replica gives its streams: awaited handle
calls, retried on another replica when the one answering dies (a call is idempotent).
Replicas read CLIPSPOT_WEIGHTS, CLIPSPOT_DEVICE, CLIPSPOT_READER, CLIPSPOT_REDIS_URL,
CLIPSPOT_MAX_SIDE and CLIPSPOT_TORCH_THREADS from their environment (services/ray_app.py sets them).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from pipeline.batcher import Batcher
from pipeline.errors import ClipSpotError
from pipeline.model.postprocess import Detection
from pipeline.types import TextInstance

log = logging.getLogger("clipspot.ray")

# What a call sees when the replica answering it dies or goes away (scale-down, crash).
REPLICA_GONE = (RayActorError, ActorUnavailableError, ReplicaUnavailableError,
                DeploymentUnavailableError)
RETRY_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)  # ~30 s: long enough for a replica to start


def replica_id() -> str:
    return serve.get_replica_context().replica_id.unique_id


@serve.deployment(
    name="TextSpotter",
    max_ongoing_requests=32,  # >= max_batch_size: batches form from in-flight requests
    ray_actor_options={"num_cpus": 1, "num_gpus": 0},
    user_config={"max_batch_size": 8},
    graceful_shutdown_timeout_s=30,
)
class TextSpotter:
    """FastTCM-CR50 + the word reader; `detect` batches frames of every stream."""

    def __init__(self) -> None:
        from pipeline.spotter import Spotter
        from services.metrics import RaySink, Recorder
        from services.prompt_cache import make_prompt_cache
        from services.threads import pin_threads

        threads = pin_threads(_torch_threads())
        self.spotter = Spotter.load(
            os.environ.get("CLIPSPOT_WEIGHTS") or None,
            device=os.environ.get("CLIPSPOT_DEVICE", "cpu"),
            max_side=int(os.environ["CLIPSPOT_MAX_SIDE"]) if os.environ.get("CLIPSPOT_MAX_SIDE")
            else None,
            reader=os.environ.get("CLIPSPOT_READER") or None,
            threads=threads,
        )
        self.cache = make_prompt_cache(
            os.environ.get("CLIPSPOT_REDIS_URL") or None, embed_dim=self.spotter.embed_dim
        )
        # The prompt cache lives here, so its hit/miss counters are exported from here.
        self.metrics = Recorder(RaySink(), cache=self.cache.stats)
        # One model thread: torch already uses the pinned cores; the event loop stays free.
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spotter")
        self._prompt_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prompt")
        self.batcher = Batcher(self._detect_group, self._model_thread, max_batch=8)

    def reconfigure(self, user_config: dict) -> None:
        """The batch size from the Serve config (`user_config`), changeable without a restart."""
        self.batcher.max_batch = max(1, int(user_config.get("max_batch_size", 8)))

    async def model_checksum(self) -> str:
        return self.spotter.checksum

    async def check_prompt(self, prompt: str | None) -> str | None:
        """Encode a custom prompt into the shared cache; the error message if it cannot be
        (a value, not an exception, so the client sees the message without a Ray traceback)."""
        loop = asyncio.get_running_loop()
        try:
            # Its own thread: a wait on another replica's lock must not hold up spotting.
            await loop.run_in_executor(self._prompt_thread, self._embedding, prompt)
        except ClipSpotError as err:
            return str(err)
        finally:
            self.metrics.sync_cache()
        return None

    async def detect(self, image: np.ndarray, prompt: str | None) -> list[Detection]:
        try:
            return await self.batcher.submit((prompt, image.shape), image)
        finally:
            self.metrics.sync_cache()

    async def words(
        self, image: np.ndarray, detections: Sequence[Detection]
    ) -> list[TextInstance | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._model_thread, self.spotter.words, image, detections
        )

    def _detect_group(self, key: Hashable, images: list[np.ndarray]) -> list[list[Detection]]:
        return self.spotter.detect(images, self._embedding(key[0]))  # type: ignore[index]

    def _embedding(self, prompt: str | None) -> np.ndarray | None:
        from services.prompt_cache import PromptKey

        if not prompt or prompt == self.spotter.default_prompt:
            return None
        key = PromptKey(self.spotter.weights_checksum, prompt, self.spotter.context_length)
        return self.cache.get_or_compute(key, lambda: self.spotter.encode_prompt(prompt))

    async def get_stats(self) -> dict:
        return {
            "replica": replica_id(),
            "frames": self.batcher.items,
            "batches": self.batcher.calls,
            "batch_sizes": dict(self.batcher.sizes),
            "cache": self.cache.stats.as_dict(),
        }


class RayEngine:
    """`SpotEngine` over the TextSpotter deployment (used on the StreamIngress replica)."""

    def __init__(self, spotter: DeploymentHandle) -> None:
        self.spotter = spotter
        self.retries = 0  # calls repeated because a replica went away (tests, logs)

    async def model_checksum(self) -> str:
        return await self._call("model_checksum")

    async def check_prompt(self, prompt: str | None) -> None:
        error = await self._call("check_prompt", prompt)
        if error is not None:
            raise ClipSpotError(error)

    async def detect(self, image: np.ndarray, prompt: str | None) -> list[Detection]:
        return await self._call("detect", image, prompt)

    async def words(
        self, image: np.ndarray, detections: Sequence[Detection]
    ) -> list[TextInstance | None]:
        return await self._call("words", image, list(detections))

    async def _call(self, method: str, *args):  # type: ignore[no-untyped-def]
        for wait_s in (*RETRY_S, None):
            try:
                return await getattr(self.spotter, method).remote(*args)
            except REPLICA_GONE as err:
                if wait_s is None:
                    raise ClipSpotError(f"the TextSpotter deployment did not answer "
                                        f"{method} ({type(err).__name__})") from None
                self.retries += 1
                log.warning("TextSpotter.%s: replica gone (%s); retrying in %.1f s",
                            method, type(err).__name__, wait_s)
                await asyncio.sleep(wait_s)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        return None


def _torch_threads() -> int:
    """CLIPSPOT_TORCH_THREADS, else the CPUs Ray gave this replica (at least one)."""
    if os.environ.get("CLIPSPOT_TORCH_THREADS"):
        return max(1, int(os.environ["CLIPSPOT_TORCH_THREADS"]))
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0)
    return max(1, int(cpus))
