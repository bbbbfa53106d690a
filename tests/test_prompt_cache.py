"""Prompt-embedding cache against a real redis-server (tests/conftest.py starts one).

The "text encoder" here is a deterministic function of the prompt standing in for
`Spotter.encode_prompt` (the cache never looks inside it); each test uses its own checksum so
keys never collide on the shared server.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid

import numpy as np
import pytest
import redis

from services.prompt_cache import (
    KEY_PREFIX,
    LocalPromptCache,
    PromptKey,
    RedisCacheConfig,
    RedisPromptCache,
    make_prompt_cache,
)

EMBED_DIM = 512


def encode(prompt: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(EMBED_DIM).astype(np.float32)


class Encoder:
    """Counts its runs; `delay_s` keeps the lock held so concurrent callers really overlap."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.delay_s = delay_s
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, prompt: str):
        def run() -> np.ndarray:
            with self._lock:
                self.calls += 1
            time.sleep(self.delay_s)
            if self.fail:
                raise RuntimeError("text encoder crashed")
            return encode(prompt)

        return run


def fresh_key(prompt: str = "a photo of the word sale") -> PromptKey:
    return PromptKey(checksum=uuid.uuid4().hex[:12], prompt=prompt, context_length=77)


def test_round_trip_exact_little_endian_bytes(redis_server):
    key = fresh_key()
    writer = RedisPromptCache(redis_server.url, embed_dim=EMBED_DIM)
    reader = RedisPromptCache(redis_server.url, embed_dim=EMBED_DIM)  # another replica
    try:
        written = writer.get_or_compute(key, Encoder()(key.prompt))
        raw = redis.Redis.from_url(redis_server.url).get(key.redis_key())
        assert raw == encode(key.prompt).astype("<f4").tobytes()
        assert len(raw) == EMBED_DIM * 4
        read = reader.get_or_compute(key, Encoder(fail=True)(key.prompt))
        assert read.dtype == np.float32 and read.tobytes() == written.tobytes()
        assert reader.stats.as_dict() == {
            "local_hits": 0, "redis_hits": 1, "misses": 0, "computations": 0, "waits": 0,
            "redis_errors": 0,
        }
        reader.get_or_compute(key, Encoder(fail=True)(key.prompt))
        assert reader.stats.local_hits == 1  # later frames never touch Redis
    finally:
        writer.close()
        reader.close()


def test_key_names_weights_prompt_and_context_length(redis_server):
    key = fresh_key("Ünïcode prompt: 'exit' sign")
    rkey = key.redis_key()
    assert rkey.startswith(f"{KEY_PREFIX}:{key.checksum}:ctx77:")
    assert key.prompt not in rkey  # hashed: any prompt makes a short, safe key
    variants = {
        rkey,
        PromptKey(key.checksum, key.prompt, 32).redis_key(),
        PromptKey("0" * 12, key.prompt, 77).redis_key(),
        PromptKey(key.checksum, key.prompt + " ", 77).redis_key(),
    }
    assert len(variants) == 4
    cache = RedisPromptCache(redis_server.url, embed_dim=EMBED_DIM)
    encoder = Encoder()
    try:
        cache.get_or_compute(key, encoder(key.prompt))
        cache.get_or_compute(PromptKey(key.checksum, key.prompt, 32), encoder(key.prompt))
        assert encoder.calls == 2  # another context length is another embedding
    finally:
        cache.close()


def test_lock_makes_one_computation_for_two_concurrent_replicas(redis_server):
    key = fresh_key()
    caches = [RedisPromptCache(redis_server.url, embed_dim=EMBED_DIM) for _ in range(2)]
    encoder = Encoder(delay_s=0.3)
    barrier = threading.Barrier(2)
    results: list[np.ndarray | None] = [None, None]

    def replica(i: int) -> None:
        barrier.wait()
        results[i] = caches[i].get_or_compute(key, encoder(key.prompt))

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert encoder.calls == 1
        assert sum(c.stats.computations for c in caches) == 1
        assert sum(c.stats.waits for c in caches) == 1
        assert sum(c.stats.redis_hits for c in caches) == 1  # the waiter read the winner's bytes
        assert results[0].tobytes() == results[1].tobytes() == encode(key.prompt).tobytes()
        lock = redis.Redis.from_url(redis_server.url).exists(f"{key.redis_key()}:lock")
        assert lock == 0  # released after the computation, not left to expire
    finally:
        for cache in caches:
            cache.close()


def test_waiter_computes_itself_when_the_winner_fails(redis_server):
    key = fresh_key()
    caches = [RedisPromptCache(redis_server.url, embed_dim=EMBED_DIM) for _ in range(2)]
    failing, healthy = Encoder(delay_s=0.3, fail=True), Encoder()
    errors: list[BaseException] = []

    def winner() -> None:
        try:
            caches[0].get_or_compute(key, failing(key.prompt))
        except RuntimeError as err:
            errors.append(err)

    thread = threading.Thread(target=winner)
    thread.start()
    while not redis.Redis.from_url(redis_server.url).exists(f"{key.redis_key()}:lock"):
        time.sleep(0.01)
    value = caches[1].get_or_compute(key, healthy(key.prompt))
    thread.join(timeout=30)
    assert len(errors) == 1 and healthy.calls == 1
    assert value.tobytes() == encode(key.prompt).tobytes()
    for cache in caches:
        cache.close()


def test_wrong_length_value_is_recomputed_and_replaced(redis_server):
    key = fresh_key()
    client = redis.Redis.from_url(redis_server.url)
    client.set(key.redis_key(), b"\x00" * 12)  # e.g. written by a model of another width
    cache = RedisPromptCache(redis_server.url, embed_dim=EMBED_DIM)
    try:
        value = cache.get_or_compute(key, Encoder()(key.prompt))
        assert cache.stats.computations == 1
        assert client.get(key.redis_key()) == value.astype("<f4").tobytes()
    finally:
        cache.close()


def test_redis_killed_falls_back_to_local_computation(disposable_redis):
    config = RedisCacheConfig(retry_after_s=60.0)
    cache = RedisPromptCache(disposable_redis.url, embed_dim=EMBED_DIM, config=config)
    before, after = fresh_key("before"), PromptKey("ck", "after the crash", 77)
    encoder = Encoder()
    cache.get_or_compute(before, encoder(before.prompt))
    disposable_redis.kill()

    value = cache.get_or_compute(after, encoder(after.prompt))
    assert value.tobytes() == encode(after.prompt).tobytes()
    assert cache.stats.redis_errors == 1 and encoder.calls == 2
    # Known prompts keep coming from memory; new ones skip the dead Redis (no second timeout).
    cache.get_or_compute(before, encoder(before.prompt))
    cache.get_or_compute(PromptKey("ck", "third", 77), encoder("third"))
    assert cache.stats.redis_errors == 1 and encoder.calls == 3

    newcomer = RedisPromptCache(disposable_redis.url, embed_dim=EMBED_DIM)  # a replica started now
    assert newcomer.get_or_compute(before, encoder(before.prompt)).tobytes() == (
        encode(before.prompt).tobytes()
    )
    assert newcomer.stats.redis_errors == 1
    cache.close()
    newcomer.close()


def test_redis_restarted_is_used_again_and_refills(disposable_redis):
    """Spotting never stops; once Redis is back (empty: a cache has no persistence), replicas
    use it again after `retry_after_s` and it refills, keyed by the weights' checksum."""
    config = RedisCacheConfig(retry_after_s=0.3)
    caches = [RedisPromptCache(disposable_redis.url, embed_dim=EMBED_DIM, config=config)
              for _ in range(2)]
    during, after = fresh_key("while redis is down"), fresh_key("after the restart")
    encoder = Encoder()
    disposable_redis.kill()
    assert caches[0].get_or_compute(during, encoder(during.prompt)).tobytes() == (
        encode(during.prompt).tobytes())
    disposable_redis.start()  # the same port, an empty Redis
    time.sleep(config.retry_after_s + 0.1)

    caches[0].get_or_compute(after, encoder(after.prompt))
    client = redis.Redis.from_url(disposable_redis.url)
    assert client.get(after.redis_key()) == encode(after.prompt).astype("<f4").tobytes()
    read = caches[1].get_or_compute(after, Encoder(fail=True)(after.prompt))  # refilled
    assert read.tobytes() == encode(after.prompt).tobytes() and caches[1].stats.redis_hits == 1
    assert caches[0].stats.redis_errors == 1 and encoder.calls == 2

    other_weights = PromptKey("f" * 12, after.prompt, after.context_length)
    other = Encoder()
    caches[1].get_or_compute(other_weights, other(after.prompt))
    assert other.calls == 1  # another checksum never reads the entry above
    for cache in caches:
        cache.close()
    client.close()


def test_local_cache_is_single_flight_across_threads():
    cache = make_prompt_cache(None)
    assert isinstance(cache, LocalPromptCache)
    key, encoder = fresh_key(), Encoder(delay_s=0.2)
    threads = [
        threading.Thread(target=cache.get_or_compute, args=(key, encoder(key.prompt)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert encoder.calls == 1
    assert cache.stats.misses == 1 and cache.stats.local_hits == 3


def test_make_prompt_cache_picks_redis_for_a_url(redis_server):
    cache = make_prompt_cache(redis_server.url, embed_dim=EMBED_DIM)
    try:
        assert isinstance(cache, RedisPromptCache)
    finally:
        cache.close()


@pytest.mark.parametrize("dim", [EMBED_DIM, None])
def test_unknown_width_accepts_any_whole_float32_value(redis_server, dim):
    key = fresh_key()
    writer = RedisPromptCache(redis_server.url, embed_dim=EMBED_DIM)
    reader = RedisPromptCache(redis_server.url, embed_dim=dim)
    try:
        writer.get_or_compute(key, Encoder()(key.prompt))
        assert reader.get_or_compute(key, Encoder(fail=True)(key.prompt)).shape == (EMBED_DIM,)
    finally:
        writer.close()
        reader.close()
