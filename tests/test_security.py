"""Security of the embedded server: TLS, mutual TLS, bearer tokens, per-client stream limits and
the 127.0.0.1 default.

Real servers on loopback, real channels; the certificates are made here, at test time, by a
throwaway CA (nothing secret is committed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from conftest import REPO_ROOT, free_port
from grpc_harness import MAX_SIDE, BackgroundServer, config_request
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image, ImageDraw
from tcp_proxy import CuttingProxy

from clipspot.aio_client import ClipSpotClient
from pipeline.errors import ClipSpotError
from pipeline.spotter import Spotter
from pipeline.types import FrameResult
from services.auth import bearer_metadata, read_tokens
from services.cli import serve as serve_cli
from services.cli.main import main as clipspot
from services.client import SpotClient
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.rpc.clipspot.v1 import spotting_pb2_grpc as pb_grpc
from services.stream_types import SessionLimits
from services.tls import ClientTls, ServerTls

TOKENS = (b"token-one-4f1c", b"token-two-9a7e")


@pytest.fixture(scope="module")
def spotter() -> Spotter:
    return Spotter.load(max_side=MAX_SIDE)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for index in range(4):
        image = Image.new("RGB", (320, 192), "white")
        ImageDraw.Draw(image).text((40 + 8 * index, 80), "OPEN 24 HOURS", fill="black")
        paths.append(folder / f"frame_{index}.jpg")
        image.save(paths[-1], quality=92)
    return paths


def test_tls_serves_a_client_that_trusts_the_ca(spotter, pki, images) -> None:
    tls = ServerTls(pki["server.crt"], pki["server.key"])
    with BackgroundServer(spotter, tls=tls) as server:
        with SpotClient(server.target, tls=ClientTls(ca=pki["ca"])) as client:
            client.wait_ready(10)
            results = [r for r in client.stream_images(images) if isinstance(r, FrameResult)]
            assert [r.frame for r in results] == [0, 1, 2, 3]
            assert isinstance(client.spot_image(images[0].read_bytes()), list)
        with SpotClient(server.target, timeout_s=10) as plaintext, \
                pytest.raises(ClipSpotError, match="UNAVAILABLE"):
            plaintext.spot_image(images[0].read_bytes())


def test_mutual_tls_refuses_a_client_without_a_certificate(spotter, pki, images) -> None:
    tls = ServerTls(pki["server.crt"], pki["server.key"], client_ca=pki["ca"])
    image = images[0].read_bytes()
    with BackgroundServer(spotter, tls=tls) as server:
        anonymous = ClientTls(ca=pki["ca"])
        with SpotClient(server.target, timeout_s=10, tls=anonymous) as client, \
                pytest.raises(ClipSpotError, match="UNAVAILABLE"):
            client.spot_image(image)
        mine = ClientTls(ca=pki["ca"], cert=pki["client.crt"], key=pki["client.key"])
        with SpotClient(server.target, timeout_s=30, tls=mine) as client:
            assert isinstance(client.spot_image(image), list)


def test_tokens_are_required_except_for_health_and_reflection(spotter, images) -> None:
    image = images[0].read_bytes()
    with BackgroundServer(spotter, tokens=TOKENS) as server:
        with SpotClient(server.target, timeout_s=30) as client:
            with pytest.raises(ClipSpotError, match="UNAUTHENTICATED"):
                client.spot_image(image)
            with pytest.raises(ClipSpotError, match="UNAUTHENTICATED"):
                list(client.stream_images(images))
        with SpotClient(server.target, timeout_s=30, token="not-a-token") as client, \
                pytest.raises(ClipSpotError, match="PERMISSION_DENIED"):
            client.spot_image(image)
        with SpotClient(server.target, timeout_s=30, token=TOKENS[1].decode()) as client:
            assert isinstance(client.spot_image(image), list)
            frames = [r for r in client.stream_images(images) if isinstance(r, FrameResult)]
            assert len(frames) == len(images)
        with grpc.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            assert "clipspot.v1.TextSpotting" in _listed_services(channel)


def test_the_async_client_sends_tls_and_token(spotter, pki, images) -> None:
    tls = ServerTls(pki["server.crt"], pki["server.key"])

    async def spot(target: str) -> list:
        async with ClipSpotClient(target, timeout_s=30, tls=ClientTls(ca=pki["ca"]),
                                  token=TOKENS[0].decode()) as client:
            await client.wait_ready(10)
            return [item async for item in client.stream_images(images)]

    with BackgroundServer(spotter, tls=tls, tokens=TOKENS) as server:
        items = asyncio.run(spot(server.target))
    assert [r.frame for r in items if isinstance(r, FrameResult)] == [0, 1, 2, 3]


def test_a_resumed_stream_keeps_sending_the_token(spotter, images) -> None:
    with BackgroundServer(spotter, tokens=TOKENS) as server, \
            CuttingProxy(server.target, [300]) as proxy, \
            SpotClient(proxy.target, token=TOKENS[0].decode()) as client:
        frames = [r for r in client.stream_images(images) if isinstance(r, FrameResult)]
        assert proxy.cut_count == 1 and len(client.resumed_at) == 1
    assert [r.frame for r in frames] == [0, 1, 2, 3]


def test_unusable_files_are_one_line_errors(pki, tmp_path: Path, capsys) -> None:
    with pytest.raises(ClipSpotError, match="cannot read the TLS certificate"):
        ServerTls(tmp_path / "missing.crt", pki["server.key"]).credentials()
    with pytest.raises(ClipSpotError, match="not a matching PEM certificate and private key"):
        ServerTls(pki["server.crt"], pki["client.key"]).credentials()
    with pytest.raises(ClipSpotError, match="not a PEM CA certificate"):
        ClientTls(ca=pki["server.key"]).credentials()
    with pytest.raises(ClipSpotError, match="needs both"):
        ClientTls(ca=pki["ca"], cert=pki["client.crt"]).credentials()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(ClipSpotError, match="no tokens"):
        read_tokens(empty)
    assert read_tokens(_write(tmp_path / "t.txt", "a\n\n b \n")) == (b"a", b"b")
    assert clipspot(["stream", str(tmp_path), "--tls-ca", str(tmp_path / "no-ca.pem")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("clipspot stream: error:") and "no-ca.pem" in err
    assert "\n" not in err and "Traceback" not in err


def test_serve_binds_loopback_and_never_logs_the_token(images, tmp_path: Path) -> None:
    token_file = _write(tmp_path / "tokens.txt", "\n".join(t.decode() for t in TOKENS) + "\n")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CLIPSPOT_TOKEN_FILE": str(token_file)}
    command = [sys.executable, "-m", "services.cli.main", "serve", "--port", str(port),
               "--max-side", str(MAX_SIDE), "--threads", "1", "--metrics-port", "0"]
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stderr=log, stdout=log)
        try:
            with SpotClient(f"127.0.0.1:{port}", timeout_s=60, token="wrong") as client:
                client.wait_ready(120)
                with pytest.raises(ClipSpotError, match="PERMISSION_DENIED"):
                    client.spot_image(images[0].read_bytes())
            with SpotClient(f"127.0.0.1:{port}", timeout_s=60, token=TOKENS[0].decode()) as ok:
                _wait_serving(f"127.0.0.1:{port}")
                assert isinstance(ok.spot_image(images[0].read_bytes()), list)
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0
        finally:
            if process.poll() is None:
                process.kill()
    text = log_path.read_text()
    assert "on 127.0.0.1 port" in text and "bearer tokens" in text
    assert all(token.decode() not in text for token in TOKENS)


class HeldStream:
    """A StreamSpot call kept open after its config (its request iterator waits)."""

    def __init__(self, channel: grpc.Channel, name: str, token: str | None = None) -> None:
        self._release = threading.Event()
        self.call = pb_grpc.TextSpottingStub(channel).StreamSpot(
            self._requests(name), timeout=60, metadata=bearer_metadata(token))

    def _requests(self, name: str):  # type: ignore[no-untyped-def]
        yield config_request(pb.INPUT_KIND_IMAGES, stream_id=name)
        self._release.wait(60)

    def first(self) -> pb.StreamResponse:
        """The first answer (credits: the stream is open), or the call's error status."""
        return next(self.call)

    def close(self) -> None:
        self._release.set()  # half-close: the stream ends OK
        list(self.call)


def test_streams_per_client_are_capped_by_address(spotter) -> None:
    limits = SessionLimits(max_streams_per_client=2)
    with BackgroundServer(spotter, limits=limits) as server, \
            grpc.insecure_channel(server.target) as channel:
        held = [HeldStream(channel, f"held-{i}") for i in range(2)]
        assert all(stream.first().HasField("credits") for stream in held)
        with pytest.raises(grpc.RpcError) as refused:
            HeldStream(channel, "third").first()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details() == ("client ipv4:127.0.0.1: 2 streams open, the limit "
                                           "is 2 (--max-streams-per-client)")
        held.pop().close()  # a slot frees as soon as a stream ends
        again = HeldStream(channel, "again")
        assert again.first().HasField("credits")
        for stream in (*held, again):
            stream.close()
        assert server.server.service.client_streams == {}


def test_with_tokens_each_token_is_a_client(spotter) -> None:
    limits = SessionLimits(max_streams_per_client=1)
    one, two = (token.decode() for token in TOKENS)
    with BackgroundServer(spotter, limits=limits, tokens=TOKENS) as server, \
            grpc.insecure_channel(server.target) as channel:
        first = HeldStream(channel, "one", token=one)
        assert first.first().HasField("credits")
        with pytest.raises(grpc.RpcError) as refused:
            HeldStream(channel, "one-more", token=one).first()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details().startswith("client token sha256:")
        assert one not in refused.value.details()  # named by a hash, never by the token
        other = HeldStream(channel, "two", token=two)  # same address, another client
        assert other.first().HasField("credits")
        first.close()
        other.close()


def test_limit_flags_are_checked_and_reach_the_server() -> None:
    parser = argparse.ArgumentParser()
    serve_cli.add_arguments(parser)
    args = parser.parse_args(["--max-streams-per-client", "4", "--max-message-mb", "8"])
    assert serve_cli.client_limits(args).max_streams_per_client == 4
    for bad in (["--max-streams-per-client", "-1"], ["--max-message-mb", "0"]):
        with pytest.raises(ClipSpotError, match="must be"):
            serve_cli.client_limits(parser.parse_args(bad))
    with pytest.raises(ClipSpotError, match="no message size option"):
        serve_cli.run(parser.parse_args(["--ray", "--max-message-mb", "8"]))


def _wait_serving(target: str, timeout_s: float = 120.0) -> None:
    """`clipspot serve` listens before the model loads; calls are UNAVAILABLE until SERVING."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        for status in stub.Watch(request, timeout=timeout_s):
            if status.status == health_pb2.HealthCheckResponse.SERVING:
                return


def _listed_services(channel: grpc.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
    return {service.name for service in reply.list_services_response.service}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
