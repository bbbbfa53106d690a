"""Prompt-embedding cache: compute a custom prompt's embedding once, share it between replicas.

A stream may bring its own text prompt (the paper's dynamic language prompts). Its embedding
costs one text-encoder run; every later frame, stream and replica should reuse it:

    cache = make_prompt_cache(os.environ.get("CLIPSPOT_REDIS_URL"))
    key = PromptKey(spotter.weights_checksum, prompt, spotter.context_length)
    emb = cache.get_or_compute(key, lambda: spotter.encode_prompt(prompt))

Two implementations behind one interface:
- `LocalPromptCache`: a dict in this process (embedded mode; no Redis needed).
- `RedisPromptCache`: the same dict in front of Redis. A missing entry is computed by exactly one
  replica: it takes a `SET NX` lock, computes, stores; the others poll briefly and read the
  stored bytes. Redis being down never stops serving: the replica computes locally, remembers
  that Redis failed and skips it for a short while (so frames do not each pay a timeout).

Redis security (docs/security.md): `rediss://` speaks TLS; the CA (and a client certificate for
mutual TLS) come as URL query arguments, `?ssl_ca_certs=/path/ca.pem&ssl_certfile=...&
ssl_keyfile=...`; the password comes from the URL (`redis://:PASSWORD@host`) or, when the URL
has none, from $CLIPSPOT_REDIS_PASSWORD. Logs and errors show the URL with its password
replaced by `***`. A Redis that refuses this replica at start (wrong password, untrusted
certificate, not there) is a WARNING, not a failure: the replica computes locally, exactly as
after a crash of Redis, and tries again every `retry_after_s`.

Values are raw little-endian float32 (`embed_dim * 4` bytes): no pickle (unsafe, version-bound),
no JSON (bigger, lossy), and the layout a Redis vector index would expect.
Calls are blocking; async callers run them with `asyncio.to_thread` (the text encoder is CPU
work anyway).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit, urlunsplit

import numpy as np

from pipeline.errors import ClipSpotError

log = logging.getLogger("clipspot.cache")

SCHEMA_VERSION = 1
KEY_PREFIX = f"clipspot:emb:v{SCHEMA_VERSION}"
PASSWORD_ENV = "CLIPSPOT_REDIS_PASSWORD"
TLS_FILE_ARGS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def redact(url: str) -> str:
    """The URL with its password (if any) replaced by `***`, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def connection_kwargs(url: str) -> dict[str, str]:
    """What the URL leaves out: the password from the environment; TLS files checked to exist
    (a typo in a path is a configuration error, refused at start, not a Redis outage)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ClipSpotError(f"prompt cache: {redact(url)}: not a redis:// or rediss:// URL")
    for name, values in parse_qs(parts.query).items():
        if name in TLS_FILE_ARGS and not Path(values[-1]).is_file():
            raise ClipSpotError(f"prompt cache: {redact(url)}: {name} {values[-1]}: no such file")
    password = os.environ.get(PASSWORD_ENV)
    return {"password": password} if password and parts.password is None else {}


@dataclass(frozen=True)
class PromptKey:
    """What identifies a prompt embedding: the weights, the exact prompt, the context length.

    The prompt is hashed, not normalised: two spellings that the tokenizer happens to treat the
    same cost one extra computation, which is cheaper than serving a wrong embedding.
    """

    checksum: str
    prompt: str
    context_length: int

    def redis_key(self) -> str:
        digest = hashlib.blake2b(self.prompt.encode("utf-8"), digest_size=16).hexdigest()
        return f"{KEY_PREFIX}:{self.checksum}:ctx{self.context_length}:{digest}"


@dataclass
class CacheStats:
    """Counters for tests and metrics. `computations` counts text-encoder runs in this process."""

    local_hits: int = 0
    redis_hits: int = 0
    misses: int = 0
    computations: int = 0
    waits: int = 0  # times this process waited for another replica's computation
    redis_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bump(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        names = ("local_hits", "redis_hits", "misses", "computations", "waits", "redis_errors")
        return {name: getattr(self, name) for name in names}


class PromptCache(Protocol):
    stats: CacheStats

    def get_or_compute(
        self, key: PromptKey, compute: Callable[[], np.ndarray]
    ) -> np.ndarray: ...

    def close(self) -> None: ...


def to_bytes(embedding: np.ndarray) -> bytes:
    return np.ascontiguousarray(embedding, dtype="<f4").reshape(-1).tobytes()


def from_bytes(raw: bytes, embed_dim: int | None) -> np.ndarray | None:
    """Decode stored bytes; None when the length does not fit (a foreign or truncated value)."""
    if len(raw) % 4 or (embed_dim is not None and len(raw) != embed_dim * 4):
        return None
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


class LocalPromptCache:
    """In-process cache with single-flight per key (threads asking together compute once)."""

    def __init__(self) -> None:
        self.stats = CacheStats()
        self._values: dict[PromptKey, np.ndarray] = {}
        self._key_locks: dict[PromptKey, threading.Lock] = {}
        self._guard = threading.Lock()

    def peek(self, key: PromptKey) -> np.ndarray | None:
        return self._values.get(key)

    def put(self, key: PromptKey, value: np.ndarray) -> None:
        self._values[key] = value

    def key_lock(self, key: PromptKey) -> threading.Lock:
        with self._guard:
            return self._key_locks.setdefault(key, threading.Lock())

    def get_or_compute(self, key: PromptKey, compute: Callable[[], np.ndarray]) -> np.ndarray:
        value = self._values.get(key)
        if value is not None:
            self.stats.bump("local_hits")
            return value
        with self.key_lock(key):
            value = self._values.get(key)
            if value is not None:
                self.stats.bump("local_hits")
                return value
            self.stats.bump("misses")
            value = _compute(compute, self.stats)
            self._values[key] = value
            return value

    def close(self) -> None:
        self._values.clear()


def _compute(compute: Callable[[], np.ndarray], stats: CacheStats) -> np.ndarray:
    stats.bump("computations")
    return np.ascontiguousarray(compute(), dtype=np.float32).reshape(-1)


@dataclass(frozen=True)
class RedisCacheConfig:
    ttl_s: int = 7 * 24 * 3600  # prompts recur across days of camera streams
    lock_ttl_s: float = 30.0  # longer than one text-encoder run on a busy CPU
    wait_s: float = 30.0  # how long a loser waits for the winner before computing itself
    poll_s: float = 0.02
    socket_timeout_s: float = 0.5  # a stalled Redis must not stall frames for long
    retry_after_s: float = 5.0  # after a Redis error, skip Redis this long


# Delete the lock only if we still own it (it may have expired and been taken by another).
_UNLOCK_LUA = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


class RedisPromptCache:
    """`LocalPromptCache` in front of Redis, with a cross-replica `SET NX` compute lock."""

    def __init__(
        self, url: str, embed_dim: int | None = None, config: RedisCacheConfig | None = None
    ) -> None:
        import redis  # only the service layer needs redis; imported here so embedded mode skips it
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.config = config or RedisCacheConfig()
        self.embed_dim = embed_dim
        self.url = redact(url)  # never keep the password where it could be printed
        self._errors = redis.exceptions.RedisError
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=self.config.socket_timeout_s,
            socket_connect_timeout=self.config.socket_timeout_s,
            retry=Retry(NoBackoff(), 0),  # fail fast: the fallback is computing locally
            **connection_kwargs(url),
        )
        self._unlock = self._client.register_script(_UNLOCK_LUA)
        self._local = LocalPromptCache()
        self.stats = self._local.stats
        self._down_until = 0.0
        self._probe()

    def _probe(self) -> None:
        """Say at start whether Redis takes us: a refusal is logged once, then we fall back."""
        try:
            self._client.ping()
        except self._errors as err:
            self._went_down(err)
        else:
            log.info("prompt cache: Redis at %s", self.url)

    def _went_down(self, err: BaseException) -> None:
        self.stats.bump("redis_errors")
        if time.monotonic() >= self._down_until:  # once per outage, not once per prompt
            log.warning("prompt cache: Redis at %s is unusable (%s: %s); computing prompt "
                        "embeddings locally, trying again in %.0f s", self.url,
                        type(err).__name__, str(err).splitlines()[0][:200] if str(err) else "",
                        self.config.retry_after_s)
        self._down_until = time.monotonic() + self.config.retry_after_s

    def get_or_compute(self, key: PromptKey, compute: Callable[[], np.ndarray]) -> np.ndarray:
        value = self._local.peek(key)
        if value is not None:
            self.stats.bump("local_hits")
            return value
        with self._local.key_lock(key):  # threads of this replica share one Redis round
            value = self._local.peek(key)
            if value is not None:
                self.stats.bump("local_hits")
                return value
            value = self._fetch_or_compute(key, compute)
            self._local.put(key, value)
            return value

    def _fetch_or_compute(self, key: PromptKey, compute: Callable[[], np.ndarray]) -> np.ndarray:
        if time.monotonic() < self._down_until:
            self.stats.bump("misses")
            return _compute(compute, self.stats)
        try:
            return self._via_redis(key, compute)
        except self._errors as err:
            # Redis unreachable or failing: serving matters more than sharing.
            self._went_down(err)
            return _compute(compute, self.stats)

    def _via_redis(self, key: PromptKey, compute: Callable[[], np.ndarray]) -> np.ndarray:
        rkey = key.redis_key()
        value = self._read(rkey)
        if value is not None:
            self.stats.bump("redis_hits")
            return value
        self.stats.bump("misses")
        lock_key, token = f"{rkey}:lock", uuid.uuid4().hex
        lock_ms = int(self.config.lock_ttl_s * 1000)
        if self._client.set(lock_key, token, nx=True, px=lock_ms):
            try:
                value = _compute(compute, self.stats)
                self._client.set(rkey, to_bytes(value), ex=self.config.ttl_s)
                return value
            finally:
                self._release(lock_key, token)
        self.stats.bump("waits")
        value = self._wait_for(rkey)
        if value is not None:
            self.stats.bump("redis_hits")
            return value
        # The winner died or is too slow: compute here rather than stall the stream.
        value = _compute(compute, self.stats)
        self._client.set(rkey, to_bytes(value), ex=self.config.ttl_s, nx=True)
        return value

    def _read(self, rkey: str) -> np.ndarray | None:
        raw = self._client.get(rkey)
        return None if raw is None else from_bytes(raw, self.embed_dim)

    def _wait_for(self, rkey: str) -> np.ndarray | None:
        """Poll for the winner's value; give up early if its lock vanished without a value."""
        deadline = time.monotonic() + self.config.wait_s
        while time.monotonic() < deadline:
            time.sleep(self.config.poll_s)
            raw, locked = self._client.pipeline(transaction=False).get(rkey).exists(
                f"{rkey}:lock"
            ).execute()
            value = None if raw is None else from_bytes(raw, self.embed_dim)
            if value is not None or not locked:
                return value
        return None

    def _release(self, lock_key: str, token: str) -> None:
        try:
            self._unlock(keys=[lock_key], args=[token])
        except self._errors:
            self.stats.bump("redis_errors")  # the lock expires on its own

    def close(self) -> None:
        self._client.close()


def make_prompt_cache(redis_url: str | None, embed_dim: int | None = None) -> PromptCache:
    """Redis-backed when a URL is given (CLIPSPOT_REDIS_URL), in-process otherwise."""
    if redis_url:
        return RedisPromptCache(redis_url, embed_dim=embed_dim)
    return LocalPromptCache()
