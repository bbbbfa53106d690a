"""Bad input ends only its own stream (INVALID_ARGUMENT, a precise message; RESOURCE_EXHAUSTED
for a message sent without a credit) while the server keeps serving others; shutdown drains
open streams while health probes see NOT_SERVING. Real server, real Spotter, real video."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from conftest import REPO_ROOT, free_port
from grpc_harness import (
    MAX_SIDE,
    VIDEO,
    BackgroundServer,
    chunk_request,
    config_request,
    frame_request,
    make_video,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pipeline.data.h264_clips import read_back_pts
from pipeline.data.synth_video import write_video
from pipeline.decode import remux_to_mpegts
from pipeline.spotter import Spotter
from pipeline.types import FrameResult
from services.client import SpotClient
from services.engines import LocalEngine
from services.grpc_edge import frame_result_from_proto, track_event_from_proto
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.rpc.clipspot.v1 import spotting_pb2_grpc as pb_grpc
from services.servicer import RpcFailure, SpottingService
from services.stream_types import SessionLimits


@pytest.fixture(scope="module")
def spotter() -> Spotter:
    return Spotter.load(max_side=MAX_SIDE)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = make_video(tmp_path_factory.mktemp("video"))
    return path


@pytest.fixture(scope="module")
def chunks(video: Path) -> list[bytes]:
    return list(remux_to_mpegts(video, chunk_size=188 * 40))


HELD = 6  # chunks a paused client sends before it stalls (within the initial 8 credits)


@pytest.fixture(scope="module")
def long_chunks(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """An 8 s clip in 22 KB chunks: the first HELD chunks hold more than the decoder's 64 KB
    probe window, so frames come out of them while the rest is never sent."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_video(replace(VIDEO, seconds=8.0), path)
    return list(remux_to_mpegts(path, chunk_size=188 * 120))


def _call(target: str, requests: list[pb.StreamRequest]) -> grpc.RpcError:
    """Send requests as they are (no client-side checks); return the error the stream ends with."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.TextSpottingStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            for _ in stub.StreamSpot(iter(requests), timeout=120):
                pass
    return caught.value


BAD_STREAMS = {
    "config missing": (
        lambda chunks: [chunk_request(0, chunks[0])],
        "config missing: the first message must be a StreamConfig, got a chunk message",
    ),
    "sequence gap": (
        lambda chunks: [config_request(pb.INPUT_KIND_MPEGTS, "gap"),
                        chunk_request(0, chunks[0]), chunk_request(2, chunks[1])],
        "stream 'gap': sequence gap: expected seq 1, got seq 2",
    ),
    "duplicate sequence number": (
        lambda chunks: [config_request(pb.INPUT_KIND_MPEGTS, "dup"),
                        chunk_request(0, chunks[0]), chunk_request(0, chunks[0])],
        "stream 'dup': sequence duplicate: expected seq 1, got seq 0",
    ),
    "second config": (
        lambda chunks: [config_request(pb.INPUT_KIND_MPEGTS, "twice"),
                        chunk_request(0, chunks[0]), config_request(pb.INPUT_KIND_MPEGTS, "x")],
        "stream 'twice': a second StreamConfig after seq 0; send one config per stream",
    ),
    "corrupt chunk": (
        lambda chunks: [config_request(pb.INPUT_KIND_MPEGTS, "corrupt"),
                        chunk_request(0, chunks[0]),
                        chunk_request(1, b"\x47" + bytes(range(255)) * 2)],
        # The second packet of seq 1 starts with data[188] == 187 instead of the sync byte.
        lambda chunks: f"stream 'corrupt' seq 1: corrupt MPEG-TS at byte {len(chunks[0]) + 188}: "
        "expected sync byte 0x47, got 0xbb",
    ),
    "undecodable frame": (
        lambda chunks: [config_request(pb.INPUT_KIND_IMAGES, "jpeg"),
                        frame_request(0, b"\xff\xd8\xff not really a JPEG")],
        "stream 'jpeg' seq 0: undecodable images frame: frame: not a readable image",
    ),
    "raw frame of the wrong size": (
        lambda chunks: [config_request(pb.INPUT_KIND_RAW_RGB, "raw",
                                       raw_shape=pb.RawShape(width=4, height=2)),
                        frame_request(0, bytes(4 * 2 * 3)), frame_request(1, bytes(5))],
        "stream 'raw' seq 1: undecodable raw frame: frame: raw frame of shape (2, 4, 3) "
        "needs 24 bytes, got 5",
    ),
    "wrong payload for the input kind": (
        lambda chunks: [config_request(pb.INPUT_KIND_MPEGTS, "mixed"), frame_request(0, b"x")],
        "stream 'mixed': expected a chunk message for input kind mpegts, got a frame message",
    ),
    "unspecified input kind": (
        lambda chunks: [config_request(pb.INPUT_KIND_UNSPECIFIED, "nokind")],
        "stream 'nokind': config: input_kind is unspecified",
    ),
}


def test_bad_input_ends_only_that_stream(spotter: Spotter, video: Path, chunks) -> None:
    frames = len(read_back_pts(video))
    with BackgroundServer(spotter) as server:
        # A good stream, held open (paused after two chunks) while the bad ones come and go.
        release, good = threading.Event(), {}

        def good_stream() -> None:
            config = pb.StreamConfig(stream_id="ok", input_kind=pb.INPUT_KIND_MPEGTS)
            payloads = (chunk_request(0, c) for c in _paused(chunks, release, at=2))
            with SpotClient(server.target) as client:
                good["items"] = list(client.stream(config, payloads))

        thread = threading.Thread(target=good_stream)
        thread.start()
        for name, (make, message) in BAD_STREAMS.items():
            error = _call(server.target, make(chunks))
            message = message(chunks) if callable(message) else message
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert message in error.details(), name
        assert thread.is_alive()  # the good stream was open throughout
        release.set()
        thread.join(300)
        results = [i for i in good["items"] if isinstance(i, FrameResult)]
        assert [r.frame for r in results] == list(range(frames))
        # ... and the server still takes new streams after all that.
        with SpotClient(server.target) as client:
            again = [i for i in client.stream_video(video) if isinstance(i, FrameResult)]
        assert len(again) == frames


def _paused(items: list, release: threading.Event, at: int) -> Iterator:
    """The items, pausing before item `at` until `release` is set (a live feed that stalls)."""
    for index, item in enumerate(items):
        if index == at:
            release.wait(120)
        yield item


def _held_requests(chunks: list[bytes], release: threading.Event, first: int) -> Iterator:
    """Config and the first `first` chunks, then nothing until `release` (a paused live feed).
    Up to 8 messages stay within the server's initial credits: no credit needs waiting for."""
    yield config_request(pb.INPUT_KIND_MPEGTS, "drain")
    for seq, chunk in enumerate(_paused(chunks, release, at=first)):
        yield chunk_request(seq, chunk)


def _drain_while_streaming(target: str, chunks: list[bytes], stop) -> None:  # type: ignore[no-untyped-def]
    """Send HELD chunks, shut the server down once it has consumed them, and check the stream
    was finished properly: every decoded frame answered in order, every track ended, a status
    that names the frame to resume from; meanwhile health probes get NOT_SERVING."""
    release = threading.Event()
    results, events, probes = [], [], []
    with grpc.insecure_channel(target) as channel:
        call = pb_grpc.TextSpottingStub(channel).StreamSpot(
            _held_requests(chunks, release, first=HELD), timeout=120)
        with pytest.raises(grpc.RpcError) as caught:
            for response in call:
                which = response.WhichOneof("message")
                if which == "result":
                    results.append(frame_result_from_proto(response.result, "drain"))
                elif which == "track":
                    events.append(track_event_from_proto(response.track))
                    if events[-1].kind == "ended" and not probes:  # the drain has begun
                        probes.append(_probe(target))
                elif response.credits.HasField("consumed_seq") and (
                    response.credits.consumed_seq == HELD - 1
                ):
                    stop()  # the stream is open and paused mid-video: shut the server down
        release.set()
    error = caught.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert results and [r.frame for r in results] == list(range(len(results)))
    assert f"every frame before frame {len(results)} was answered" in error.details()
    started = {e.track_id for e in events if e.kind == "started"}
    assert started == {e.track_id for e in events if e.kind == "ended"}
    assert probes == [health_pb2.HealthCheckResponse.NOT_SERVING]


def _probe(target: str) -> int:
    """A kubelet-style health probe on a new connection."""
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10)
    return reply.status


def test_stop_drains_open_streams(spotter: Spotter, long_chunks) -> None:
    server = BackgroundServer(spotter).start()
    try:
        _drain_while_streaming(server.target, long_chunks, server.request_stop)
    finally:
        server.stop()


def test_sigterm_drains_and_exits(long_chunks, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "services.cli.main", "serve", "--port", str(port),
               "--host", "127.0.0.1", "--max-side", str(MAX_SIDE)]
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stderr=log, stdout=log)
    try:
        with SpotClient(f"127.0.0.1:{port}") as client:
            client.wait_ready(120)
        _drain_while_streaming(f"127.0.0.1:{port}", long_chunks,
                               lambda: process.send_signal(signal.SIGTERM))
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert "draining" in (tmp_path / "serve.log").read_text()


def test_a_new_stream_during_the_drain_is_refused(spotter: Spotter) -> None:
    """Once the drain has begun a new stream gets UNAVAILABLE at once (connect elsewhere).
    Called on the service core directly: over gRPC the drain of an idle server ends before
    a second call could arrive."""
    async def scenario() -> RpcFailure:
        engine = LocalEngine(spotter)
        service = SpottingService(engine)
        service.drain.begin(30.0)
        requests = _aiter([config_request(pb.INPUT_KIND_MPEGTS, "late")])
        try:
            with pytest.raises(RpcFailure) as caught:
                async for _ in service.stream_spot(requests):
                    pass
        finally:
            await engine.close()
        assert service.health_status() == health_pb2.HealthCheckResponse.NOT_SERVING
        return caught.value

    failure = asyncio.run(scenario())
    assert failure.code == grpc.StatusCode.UNAVAILABLE
    assert "shutting down and takes no new streams" in failure.message


async def _aiter(items: list) -> AsyncIterator:
    for item in items:
        yield item


def test_messages_beyond_the_credits_are_refused(spotter: Spotter, video: Path, chunks) -> None:
    """A client that ignores credits gets RESOURCE_EXHAUSTED naming the message; the server
    holds at most the credits it granted (plus gRPC's own window) for that stream."""
    limits = SessionLimits(initial_credits=2)
    with BackgroundServer(spotter, limits=limits) as server:
        flood = [config_request(pb.INPUT_KIND_MPEGTS, "flood")] + [
            chunk_request(seq, chunk) for seq, chunk in enumerate(chunks)]
        error = _call(server.target, flood)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "stream 'flood' seq " in error.details()
        assert "sent without a credit" in error.details()
        # The same server serves a well-behaved client (which waits for credits) in full.
        with SpotClient(server.target) as client:
            config = pb.StreamConfig(stream_id="polite", input_kind=pb.INPUT_KIND_MPEGTS)
            items = list(client.stream(config, (chunk_request(0, c) for c in chunks)))
        answered = [i.frame for i in items if isinstance(i, FrameResult)]
        assert answered == list(range(len(read_back_pts(video))))
