"""Resume after a cut: every frame exactly once, in order, pts unchanged, and the words an
uncut run reports (every-frame mode), whether the TCP connection dies at a random byte offset
(a test-owned proxy) or the server is killed with SIGKILL and started again. Real gRPC, real
server, real Spotter, real H.264 through PyAV; `SpotClient` resumes as `clipspot stream` does.

Tracks restart at a resume (documented in the .proto): a word is reported again once its new
track is confirmed, and its text is voted from the readings since the resume. So before the
first cut results are identical; after it every reported word is one the uncut run reports on
that frame (same polygon), and from the second frame after the resume on, all of them are.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, free_port
from grpc_harness import MAX_SIDE, VIDEO, BackgroundServer, extract_jpegs
from tcp_proxy import CuttingProxy

from pipeline.data.synth_video import write_video
from pipeline.spotter import Spotter
from pipeline.types import FrameResult, TrackEvent
from services.client import SpotClient, StreamOptions

EVERY_FRAME = StreamOptions(stream_id="resume", detect_every=1, chunk_bytes=188 * 20,
                            retry_s=60)


@pytest.fixture(scope="module")
def spotter() -> Spotter:
    return Spotter.load(max_side=MAX_SIDE)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s: long enough that frames are answered before a cut (the decoder probes 64 KB)."""
    path = tmp_path_factory.mktemp("video") / "long.mp4"
    write_video(replace(VIDEO, seconds=6.0), path)
    return path


@pytest.fixture(scope="module")
def server(spotter: Spotter):
    with BackgroundServer(spotter) as running:
        yield running


@pytest.fixture(scope="module")
def uncut(server, video: Path) -> list[FrameResult]:
    with SpotClient(server.target) as client:
        results, _ = _split(client.stream_video(video, EVERY_FRAME))
    assert sum(len(r.instances) for r in results) > 0, "no words: equality would prove nothing"
    return results


def _split(items) -> tuple[list[FrameResult], list[TrackEvent]]:  # type: ignore[no-untyped-def]
    items = list(items)
    return ([i for i in items if isinstance(i, FrameResult)],
            [i for i in items if isinstance(i, TrackEvent)])


def assert_equal_words(
    got: list[FrameResult], want: list[FrameResult], resumed_at: list[int]
) -> None:
    """Exactly once and in order, same pts; same words as explained in the module doc."""
    assert [r.frame for r in got] == [r.frame for r in want]
    first_cut = min(resumed_at, default=len(want))
    for g, w in zip(got, want, strict=True):
        assert g.pts == w.pts, f"frame {g.frame}"
        if g.frame < first_cut:
            assert [i.text for i in g.instances] == [i.text for i in w.instances], g.frame
            assert [i.track_id for i in g.instances] == [i.track_id for i in w.instances]
        reported = [_box(i.polygon) for i in g.instances]
        uncut = [_box(i.polygon) for i in w.instances]
        assert set(reported) <= set(uncut), f"frame {g.frame}: a word the uncut run lacks"
        if not any(start <= g.frame < start + 2 for start in resumed_at):
            assert sorted(reported) == sorted(uncut), f"frame {g.frame}: a word is missing"


def _box(polygon: np.ndarray) -> tuple[int, ...]:
    return tuple(np.round(polygon).astype(int).ravel().tolist())


def assert_tracks_closed(events: list[TrackEvent]) -> None:
    started = [e.track_id for e in events if e.kind == "started"]
    ended = [e.track_id for e in events if e.kind == "ended"]
    assert len(started) == len(set(started)), "a track id was reused after a resume"
    assert sorted(ended) == sorted(started)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_connection_cut_at_a_random_byte_resumes_exactly_once(
    server, video: Path, uncut: list[FrameResult], seed: int
) -> None:
    rng = random.Random(seed)
    # Two connections die at random points among the answers (~18 KB of them in all).
    cuts = [rng.randrange(1_000, 12_000), rng.randrange(1_000, 8_000)]
    with CuttingProxy(server.target, cuts) as proxy, SpotClient(proxy.target) as client:
        results, events = _split(client.stream_video(video, EVERY_FRAME))
        # Cut after some frames were answered at least once, or the test proves little.
        assert proxy.cut_count == 2 and max(client.resumed_at) > 0, client.resumed_at
        resumed_at = client.resumed_at
    assert_equal_words(results, uncut, resumed_at)
    assert_tracks_closed(events)


def test_a_folder_of_images_resumes_at_the_first_unanswered_image(
    server, video: Path, uncut: list[FrameResult], tmp_path: Path
) -> None:
    jpegs = extract_jpegs(video, tmp_path / "jpegs")
    with SpotClient(server.target) as client:
        want, _ = _split(client.stream_images(jpegs, EVERY_FRAME))
    with CuttingProxy(server.target, [6_000]) as proxy, SpotClient(proxy.target) as client:
        got, events = _split(client.stream_images(jpegs, EVERY_FRAME))
        assert proxy.cut_count == 1 and client.resumed_at[0] > 0, client.resumed_at
        resumed_at = client.resumed_at
    assert [r.source for r in got] == [str(p) for p in jpegs]
    assert_equal_words(got, want, resumed_at)
    assert_tracks_closed(events)


def _start_server(port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "services.cli.main", "serve", "--port", str(port),
               "--host", "127.0.0.1", "--max-side", str(MAX_SIDE), "--threads", "1"]
    out = log.open("a")
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=out)


def test_a_server_killed_and_restarted_loses_no_frame(
    video: Path, uncut: list[FrameResult], tmp_path: Path
) -> None:
    """SIGKILL mid-stream (no drain, no goodbye), a new server on the same port: the client
    keeps retrying and resumes."""
    port, log = free_port(), tmp_path / "serve.log"
    first = _start_server(port, log)
    processes = [first]
    got: list = []
    try:
        with SpotClient(f"127.0.0.1:{port}") as client:
            client.wait_ready(120)
            for item in client.stream_video(video, EVERY_FRAME):
                got.append(item)
                if len(processes) == 1 and isinstance(item, FrameResult) and item.frame == 25:
                    first.send_signal(signal.SIGKILL)
                    first.wait(30)
                    processes.append(_start_server(port, log))
            resumed_at = client.resumed_at
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(30)
    assert len(processes) == 2 and resumed_at and resumed_at[0] >= 26
    results, events = _split(got)
    assert_equal_words(results, uncut, resumed_at)
    assert_tracks_closed(events)
