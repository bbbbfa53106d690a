"""Live cameras that drop and come back (pipeline/live_source.py, `clipspot spot|stream URL`).

The camera is a real HTTP server in its own process serving a synthetic clip as MPEG-TS, paced
in real time with no Content-Length (a live feed). Tests kill that process mid-stream (SIGKILL,
or `os._exit` inside it) and start a new one on the same port, as a rebooting camera would.
"""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from grpc_harness import MAX_SIDE, BackgroundServer

from pipeline.data.synth_video import VideoConfig, write_video
from pipeline.decode import VideoReader, VideoReadError, remux_to_mpegts
from pipeline.errors import ClipSpotError
from pipeline.live_source import LiveSource
from services.cli.main import main as clipspot

CLIP = VideoConfig(width=320, height=192, fps=10.0, seconds=6.0, seed=7,
                   scenarios=("ticker", "signs"))

# argv: port, ts file, seconds to pace it over, exit after (s from the first request; 0: never),
# once (1: exit when the first response is sent), stall after (s; 0: never; the socket stays open)
_CAMERA = r"""
import os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, data, seconds = int(sys.argv[1]), open(sys.argv[2], "rb").read(), float(sys.argv[3])
exit_after, once, stall_after = float(sys.argv[4]), sys.argv[5] == "1", float(sys.argv[6])
started = threading.Event()

class Feed(BaseHTTPRequestHandler):
    def do_GET(self):
        if exit_after and not started.is_set():
            threading.Timer(exit_after, os._exit, (1,)).start()
        started.set()
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.end_headers()
        start, step = time.monotonic(), 188 * 7
        for at in range(0, len(data), step):
            time.sleep(max(0.0, start + at * seconds / len(data) - time.monotonic()))
            if stall_after and time.monotonic() - start > stall_after:
                time.sleep(3600)
            self.wfile.write(data[at:at + step])
        if once:
            self.wfile.flush()
            os._exit(0)

    def log_message(self, *args):
        pass

ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", port), Feed)
print("ready", flush=True)
server.serve_forever()
"""


class Camera:
    """The camera server process on one fixed port; `start` again after a kill to restart."""

    def __init__(self, clip: Path) -> None:
        self.clip, self.port = clip, free_port()
        self.process: subprocess.Popen | None = None
        self._restarter: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live.ts"

    def start(self, exit_after: float = 0, once: bool = False, stall_after: float = 0) -> None:
        args = [str(self.port), str(self.clip), str(CLIP.seconds), str(exit_after),
                "1" if once else "0", str(stall_after)]
        self.process = subprocess.Popen([sys.executable, "-c", _CAMERA, *args],
                                        stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == b"ready"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    def restart_when_dead(self, after_s: float = 1.0, **start: object) -> None:
        """Once the running process dies (killed or exited), start a new one `after_s` later."""
        dead = self.process

        def restart() -> None:
            assert dead is not None
            dead.wait()
            time.sleep(after_s)
            self.start(**start)  # type: ignore[arg-type]

        self._restarter = threading.Thread(target=restart, daemon=True)
        self._restarter.start()

    def close(self) -> None:
        if self._restarter is not None:
            self._restarter.join(10)
        self.kill()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("camera")
    write_video(CLIP, folder / "clip.mp4")
    path = folder / "clip.ts"
    path.write_bytes(b"".join(remux_to_mpegts(folder / "clip.mp4")))
    return path


@pytest.fixture
def camera(clip: Path) -> Iterator[Camera]:
    cam = Camera(clip)
    yield cam
    cam.close()


def assert_rising(frames: list[int], pts: list[float]) -> None:
    assert frames == list(range(len(frames))), "frame numbers must go on by 1 from 0"
    assert all(b > a for a, b in itertools.pairwise(pts)), "pts must strictly rise"


@pytest.mark.timeout(60)
def test_a_camera_killed_and_restarted_goes_on_numbering_and_timing(camera, caplog):
    caplog.set_level(logging.INFO, logger="clipspot.live")
    camera.start()
    source = LiveSource(camera.url, reconnect_for_s=15, read_timeout_s=3)
    frames, after = [], 0
    for frame in source:
        frames.append(frame)
        if frame.index == 15:  # mid-stream: the camera dies, and is back about 1 s later
            camera.kill()
            camera.restart_when_dead(1.0)
        after += source.reconnects > 0
        if after == 15:
            break
    assert source.reconnects == 1
    assert_rising([f.index for f in frames], [f.pts for f in frames])
    lines = [r.getMessage() for r in caplog.records if r.name == "clipspot.live"]
    dropped = [line for line in lines if "dropped after frame" in line]
    assert len(dropped) == 1 and "reconnecting in 0.5 s (attempt 1)" in dropped[0], lines
    last_before = int(dropped[0].split("dropped after frame ")[1].split()[0])
    assert last_before >= 15
    assert any("reconnected after" in line and f"go on from {last_before + 1}" in line
               for line in lines), lines
    # The restarted camera starts its clock again; the gap in pts is the time it was away.
    gap = frames[last_before + 1].pts - frames[last_before].pts
    assert gap >= 1.0


@pytest.mark.timeout(30)
def test_a_camera_that_never_comes_back_ends_within_the_budget(camera, caplog):
    caplog.set_level(logging.INFO, logger="clipspot.live")
    camera.start()
    source = LiveSource(camera.url, reconnect_for_s=2, read_timeout_s=3)
    killed_at = 0.0
    with pytest.raises(ClipSpotError) as raised:
        for frame in source:
            if frame.index == 5:
                camera.kill()
                killed_at = time.monotonic()
    waited = time.monotonic() - killed_at
    message = str(raised.value)
    assert "\n" not in message and message.startswith(camera.url)
    assert "did not come back within 2 s" in message and "Connection refused" in message
    assert 2.0 <= waited < 6.0, waited
    assert sum("failed (" in r.getMessage() for r in caplog.records) >= 1


@pytest.mark.timeout(30)
def test_a_silent_http_source_times_out_instead_of_hanging(camera):
    """FFmpeg's `rw_timeout` (set for http by VideoReader) ends a read that gets no bytes; the
    socket stays open, so without it the reader would wait forever."""
    camera.start(stall_after=3.5)  # after the 2.5 s FFmpeg probes on open
    reader = VideoReader(camera.url, read_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(VideoReadError) as raised:
        for _ in reader:
            pass
    assert raised.value.reason == "Connection timed out"
    assert raised.value.frames > 10
    assert time.monotonic() - started < 8.0


def _camera_that_reboots_then_dies(camera: Camera) -> None:
    """Serves 3.5 s, dies, is back 1 s later for one full pass of the clip, then is gone."""
    camera.start(exit_after=3.5)
    camera.restart_when_dead(1.0, once=True)


def _read_run(out: Path) -> tuple[list[int], list[float]]:
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return [line["frame"] for line in lines], [line["pts"] for line in lines]


def _check_cli_run(code: int, err: str, out: Path, command: str, url: str) -> None:
    frames, pts = _read_run(out)
    assert code == 2, err
    assert_rising(frames, pts)
    assert len(frames) > 70, "the frames after the restart must arrive"  # 35 before, 60 after
    errors = [line for line in err.splitlines() if line.startswith(f"clipspot {command}: error")]
    assert len(errors) == 1 and "did not come back within 3 s" in errors[0], err
    assert f"clipspot {command}: camera {url}: dropped after frame" in err
    assert "reconnected after" in err


@pytest.mark.timeout(60)
def test_clipspot_spot_url_survives_a_camera_restart(camera, tmp_path, capsys):
    _camera_that_reboots_then_dies(camera)
    out = tmp_path / "spot.jsonl"
    code = clipspot(["spot", camera.url, "--reconnect-for", "3", "--out", str(out),
                     "--max-side", str(MAX_SIDE), "--threads", "1"])
    _check_cli_run(code, capsys.readouterr().err, out, "spot", camera.url)


@pytest.mark.timeout(90)
def test_clipspot_stream_url_survives_a_camera_restart(camera, tmp_path, capsys):
    from pipeline.spotter import Spotter

    with BackgroundServer(Spotter.load(max_side=MAX_SIDE)) as server:
        _camera_that_reboots_then_dies(camera)
        out = tmp_path / "stream.jsonl"
        code = clipspot(["stream", camera.url, "--server", server.target,
                         "--reconnect-for", "3", "--out", str(out)])
    _check_cli_run(code, capsys.readouterr().err, out, "stream", camera.url)
    assert {json.loads(line)["source"] for line in out.read_text().splitlines()} == {camera.url}
