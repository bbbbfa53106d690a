"""Faults outside the input (issue 11): a network that goes silent, a client that stops reading,
and a full or read-only disk where ClipSpot writes. One real embedded server on loopback (real
Spotter, real H.264 through PyAV), in this process; docs/reliability.md lists the outcomes.

- Silent network: a test-owned TCP proxy stops forwarding without closing. Only the server's
  keepalive pings (1 s, answered within 1 s here) can find it; the stream must then be freed:
  no open stream in /metrics, its state gone, its thread gone, one log line, no traceback.
- Slow reader: a client that takes its 8 credits' worth of chunks (~160 frames) and then stops
  reading for a while. Credits bound what the server holds; the RSS must stay within 50 MiB.
- Disk: `/dev/full` (ENOSPC on write) and a path under /sys (no file can be created there,
  even by root): one line, non-zero exit, no traceback, and the server serves on.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_harness import (
    MAX_SIDE,
    VIDEO,
    BackgroundServer,
    chunk_request,
    config_request,
)
from tcp_proxy import CuttingProxy

from bench.common import rss_mb
from pipeline.data.synth_video import write_video
from pipeline.decode import remux_to_mpegts
from pipeline.spotter import Spotter
from pipeline.types import FrameResult
from services import stream_core
from services.cli.main import main
from services.client import CHANNEL_OPTIONS, SpotClient, StreamOptions
from services.grpc_edge import DROP_POLICY_TO_PROTO
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.rpc.clipspot.v1 import spotting_pb2_grpc as pb_grpc

TS = pb.INPUT_KIND_MPEGTS
KEEPALIVE_S, KEEPALIVE_TIMEOUT_S = 1.0, 1.0
DETECT_BOUND_S = KEEPALIVE_S + KEEPALIVE_TIMEOUT_S + 3.0  # the stated time: slack for 2 busy cores
RSS_BOUND = 50 * 1024 * 1024  # slow reader's growth, from just before it starts
PAUSE_S = 4.0  # how long the slow reader reads nothing


def rss_bytes() -> int:
    """This process's resident memory (server and client both live here)."""
    return int(rss_mb(os.getpid()) * 2**20)


@pytest.fixture(scope="module")
def spotter() -> Spotter:
    return Spotter.load(max_side=MAX_SIDE)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s at 10 fps: 200 frames, 10 chunks of 64 KB."""
    path = tmp_path_factory.mktemp("faults") / "long.mp4"
    write_video(replace(VIDEO, seconds=20.0), path)
    return path


@pytest.fixture(scope="module")
def server(spotter: Spotter) -> Iterator[BackgroundServer]:
    running = BackgroundServer(spotter, metrics_port=0)
    running._config = replace(running._config, keepalive_s=KEEPALIVE_S,
                              keepalive_timeout_s=KEEPALIVE_TIMEOUT_S)
    with running:
        yield running


def _open_streams(server: BackgroundServer) -> int:
    assert server.server is not None
    return server.server.service.open_streams


def _metric(server: BackgroundServer, line_start: str) -> float:
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(line_start)]
    return sum(values)


def _wait_until(condition, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _served_normally(server: BackgroundServer, video: Path) -> int:
    """Frames of a whole, ordinary stream (asserting it lost none)."""
    with SpotClient(server.target) as client:
        results = [r for r in client.stream_video(video, StreamOptions(stream_id="after"))
                   if isinstance(r, FrameResult)]
    assert [r.frame for r in results] == list(range(len(results))) and results
    return len(results)


@pytest.fixture(scope="module")
def warm(server: BackgroundServer, video: Path) -> int:
    """One whole run of the video (decoders, model, allocator warm); RSS after it."""
    _served_normally(server, video)
    gc.collect()
    return rss_bytes()


def test_silent_network_is_found_and_the_stream_freed(
    server: BackgroundServer, video: Path, warm: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    chunks = list(remux_to_mpegts(video, chunk_size=64 * 1024))[:4]
    release = threading.Event()

    def requests() -> Iterator[pb.StreamRequest]:
        yield config_request(TS, "silent")
        for seq, chunk in enumerate(chunks):
            yield chunk_request(seq, chunk)
        release.wait(60)  # open, like a camera between chunks: never half-closes

    cancelled_before = _metric(server, 'clipspot_streams_ended_total{code="CANCELLED"}')
    with CuttingProxy(server.target, cuts=[]) as proxy:
        # A plain channel, no client keepalive: only the server's pings can find the silence.
        channel = grpc.insecure_channel(proxy.target)
        call = pb_grpc.TextSpottingStub(channel).StreamSpot(requests())
        try:
            assert any(r.WhichOneof("message") == "result" for r in call)  # frames flow
            assert _open_streams(server) == 1
            proxy.go_silent()
            silent_at = time.monotonic()
            assert _wait_until(lambda: _open_streams(server) == 0, 8), "never noticed"
            detected_s = time.monotonic() - silent_at
        finally:
            release.set()
            call.cancel()
            channel.close()
    print(f"silent network found after {detected_s:.2f} s (bound {DETECT_BOUND_S:.0f} s)")
    assert detected_s < DETECT_BOUND_S
    assert _metric(server, "clipspot_active_streams ") == 0
    assert _metric(server, 'clipspot_streams_ended_total{code="CANCELLED"}') \
        == cancelled_before + 1
    # Its state goes once its last piece of work lets go (a runner step or a decode in a
    # thread finishes what it started), not necessarily at the very moment the call ends.
    assert _wait_until(lambda: not _live("silent"), 10), "the stream's state stays in memory"
    assert _wait_until(lambda: not [t for t in threading.enumerate()
                                    if t.name.startswith("stream_")], 10)
    lines = [r for r in caplog.records if "'silent'" in r.getMessage()]
    assert [r.getMessage() for r in lines if "cancelled" in r.getMessage()] == [
        "stream 'silent': cancelled after frame "
        f"{_last_frame(lines)} (the client went away or its connection died)"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert _served_normally(server, video) == 200


def _live(stream_id: str) -> list[stream_core._Stream]:
    gc.collect()
    return [s for s in stream_core.LIVE_STREAMS if s.settings.stream_id == stream_id]


def _last_frame(lines: list[logging.LogRecord]) -> str:
    message = next(r.getMessage() for r in lines if "cancelled after frame" in r.getMessage())
    return message.split("cancelled after frame ")[1].split(" ")[0]


@pytest.mark.parametrize("policy", ["none", "keep_latest"])
def test_a_client_that_stops_reading_holds_bounded_memory(
    server: BackgroundServer, video: Path, warm: int, policy: str
) -> None:
    """8 credits' worth of chunks (~160 frames), then nothing read for PAUSE_S, then the rest."""
    stream_id = f"slow-{policy}"
    chunks = list(remux_to_mpegts(video, chunk_size=64 * 1024))
    credits = threading.Semaphore(0)

    def requests() -> Iterator[pb.StreamRequest]:
        yield config_request(TS, stream_id, drop_policy=DROP_POLICY_TO_PROTO[policy])
        for seq, chunk in enumerate(chunks):
            assert credits.acquire(timeout=60)  # within credits, always
            yield chunk_request(seq, chunk)

    def take(response: pb.StreamResponse) -> pb.StreamResponse:
        if response.WhichOneof("message") == "credits":
            for _ in range(response.credits.grant):
                credits.release()
        return response

    dropped_before = _metric(server, f'clipspot_frames_dropped_total{{policy="{policy}"}}')
    gc.collect()
    before = rss_bytes()  # what this client costs, over what earlier tests left
    with grpc.insecure_channel(server.target, options=CHANNEL_OPTIONS) as channel:
        call = pb_grpc.TextSpottingStub(channel).StreamSpot(requests())
        responses = [take(next(call))]  # the initial credits: the client sends 8 chunks
        peak, held = _sample_while_not_reading(stream_id)
        responses += [take(r) for r in call]
    results = [r.result for r in responses if r.WhichOneof("message") == "result"]
    assert [r.frame for r in results] == list(range(200))  # no frame lost, none twice
    dropped = sum(r.dropped for r in results)
    reported = _metric(server, f'clipspot_frames_dropped_total{{policy="{policy}"}}')
    print(f"{policy}: RSS growth {(peak - before) / 2**20:.1f} MiB while not reading "
          f"({held} outputs waiting for the client), {dropped} of 200 frames dropped")
    assert peak - before < RSS_BOUND
    assert reported - dropped_before == dropped
    assert (dropped > 0) if policy == "keep_latest" else (dropped == 0)


def _sample_while_not_reading(stream_id: str) -> tuple[int, int]:
    """Peak RSS and peak outputs queued for the client, over PAUSE_S of not reading."""
    peak, held, end = 0, 0, time.monotonic() + PAUSE_S
    while time.monotonic() < end:
        peak = max(peak, rss_bytes())
        held = max([held] + [s.out.qsize() for s in list(stream_core.LIVE_STREAMS)
                             if s.settings.stream_id == stream_id])
        time.sleep(0.1)
    return peak, held


# ---------------------------------------------------------------- disk full / not writable
# /dev/full: every write fails with ENOSPC, as on a full disk. /sys: no file can be created
# there, even by root (who ignores chmod), so it stands in for a read-only place: EACCES, where
# a read-only mount says EROFS; mounting one needs privileges CI does not have.
FULL = "/dev/full"
READ_ONLY = "/sys/clipspot-out.jsonl"

@pytest.fixture(scope="module")
def short_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("short") / "short.mp4"
    write_video(VIDEO, path)  # 24 frames
    return path


def _cli_fails_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str],
                           problem: str) -> None:
    code = main(argv)  # an exception escaping main() is what the user sees as a traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith(f"clipspot {argv[0]}: error: "), err
    assert problem in err[0]


@pytest.mark.parametrize(("flag", "path", "problem"), [
    ("--out", FULL, "No space left on device"),
    ("--events", FULL, "No space left on device"),
    ("--out", READ_ONLY, "cannot write (Permission denied)"),
    ("--events", READ_ONLY, "cannot write (Permission denied)"),
], ids=["out-full", "events-full", "out-read-only", "events-read-only"])
def test_stream_cli_cannot_write(server: BackgroundServer, short_video: Path, flag: str,
                                 path: str, problem: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["stream", str(short_video), "--server", server.target, "--retry", "0", flag, path]
    try:
        _cli_fails_in_one_line(argv, capsys, problem)
    finally:  # the client's failure is its own: the server frees the stream and serves on
        assert _wait_until(lambda: _open_streams(server) == 0, 20)
        assert _served_normally(server, short_video) == 24


@pytest.mark.parametrize(("path", "problem"), [
    (FULL, "No space left on device"),
    (READ_ONLY, "cannot write (Permission denied)"),
], ids=["full", "read-only"])
def test_spot_cli_cannot_write(short_video: Path, path: str, problem: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["spot", str(short_video), "--max-side", str(MAX_SIDE), "--threads", "1",
            "--out", path]
    _cli_fails_in_one_line(argv, capsys, problem)


def test_server_log_on_a_full_disk_does_not_stop_serving(
    server: BackgroundServer, short_video: Path
) -> None:
    """The server writes only its log (stderr). Logging swallows a failed write."""
    handler = logging.StreamHandler(open(FULL, "w"))  # noqa: SIM115 (closed below)
    logger = logging.getLogger("clipspot")
    logger.addHandler(handler)
    try:
        assert _served_normally(server, short_video) == 24
    finally:
        logger.removeHandler(handler)
        handler.stream.close()
