"""The `clipspot` Python API and the scripts in examples/, run for real.

The examples run in this process (`runpy`, their own `__main__` block) against a synthetic
video, and the streaming one against an embedded gRPC server on loopback; the asyncio client
is checked against the threaded SpotClient on the same server, with small chunks so the
server's credits (enforced) pace it.
"""

from __future__ import annotations

import asyncio
import inspect
import runpy
import sys
import tomllib
from pathlib import Path

import cv2
import pytest
import webvtt

import clipspot
from pipeline.decode import VideoReader
from pipeline.jsonl import frame_result_to_dict
from services.client import SpotClient
from tests.grpc_harness import MAX_SIDE, BackgroundServer, make_video

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("api"))[0]


@pytest.fixture(scope="module")
def still(video: Path) -> Path:
    """Frame 12 of the video as a PNG (lossless: server and local spot see the same pixels)."""
    frame = next(f for f in VideoReader(str(video)) if f.index == 12)
    path = video.parent / "frame_12.png"
    cv2.imwrite(str(path), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def spotter() -> clipspot.Spotter:
    return clipspot.Spotter.load(max_side=MAX_SIDE)


@pytest.fixture(scope="module")
def server(spotter):
    with BackgroundServer(spotter) as running:
        yield running


def run_example(name: str, *args: str, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *args])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out


def test_the_package_is_built_and_documented():
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert "clipspot" in wheel["targets"]["wheel"]["packages"]
    for name in clipspot.__all__:
        value = getattr(clipspot, name)
        assert inspect.getdoc(value), f"clipspot.{name} has no docstring"
    for function in (clipspot.spot_video, clipspot.write_captions, clipspot.read_image):
        hints = inspect.get_annotations(function)
        assert "return" in hints and len(hints) == len(inspect.signature(function).parameters) + 1


def test_spot_image_example(still, monkeypatch, capsys):
    out = run_example("spot_image.py", str(still), monkeypatch=monkeypatch, capsys=capsys)
    count = int(out.splitlines()[-1].split()[0])
    assert out.splitlines()[-1] == f"{count} words in {still}" and count >= 3
    assert len(out.splitlines()) == count + 1


def test_video_captions_example(video, tmp_path, monkeypatch, capsys):
    captions = tmp_path / "clip.vtt"
    out = run_example("video_captions.py", str(video), str(captions),
                      monkeypatch=monkeypatch, capsys=capsys)
    assert out.splitlines()[-1].startswith("24 frames, ")
    cues = webvtt.read(str(captions), strict=True)
    started = [line for line in out.splitlines() if " started: " in line]
    ended = [line for line in out.splitlines() if " ended: " in line]
    assert len(cues) == len(started) == len(ended) >= 5


def test_spot_video_matches_the_frame_loop_of_clipspot_spot(video, spotter):
    events: list[clipspot.TrackEvent] = []
    results = list(clipspot.spot_video(video, spotter, on_event=events.append))
    assert [r.frame for r in results] == list(range(24))
    assert {r.source for r in results} == {str(video)}
    shown = {i.track_id for r in results for i in r.instances}
    assert shown == {e.track_id for e in events if e.kind == "started"}
    assert sorted(e.track_id for e in events if e.kind == "ended") == sorted(shown)
    with pytest.raises(clipspot.ClipSpotError, match="no such file"):
        clipspot.spot_video(video.parent / "missing.mp4", spotter)  # at the call, not later
    with pytest.raises(clipspot.ClipSpotError, match="captions must be"):
        clipspot.spot_video(video, spotter, captions="out.txt")


def test_stream_to_server_example(server, video, tmp_path, monkeypatch, capsys):
    captions = tmp_path / "served.srt"
    out = run_example("stream_to_server.py", str(video), server.target, str(captions),
                      monkeypatch=monkeypatch, capsys=capsys)
    count = int(out.splitlines()[-1].split()[0])
    assert out.splitlines()[-1] == f"{count} captions in {captions}" and count >= 5
    assert len([line for line in out.splitlines() if "new text" in line]) == count
    assert len(webvtt.from_srt(str(captions))) == count


async def _collect(target: str, video: Path, still: Path) -> tuple[list, list]:
    async with clipspot.ClipSpotClient(target) as client:
        await client.wait_ready()
        options = clipspot.StreamOptions(chunk_bytes=4096)  # ~20 messages for 8 credits
        items = [item async for item in client.stream_video(video, options)]
        words = await client.spot_image(still.read_bytes())
    return items, words


def _as_comparable(item) -> tuple:
    if isinstance(item, clipspot.FrameResult):
        return ("frame", frame_result_to_dict(item))
    return ("event", item.kind, item.track_id, item.text, item.first_pts, item.last_pts)


def test_async_client_answers_as_the_threaded_client(server, video, still, spotter):
    items, words = asyncio.run(_collect(server.target, video, still))
    with SpotClient(server.target) as client:
        want = list(client.stream_video(video))
    assert [_as_comparable(i) for i in items] == [_as_comparable(i) for i in want]
    frames = [i for i in items if isinstance(i, clipspot.FrameResult)]
    assert [f.frame for f in frames] == list(range(24)) and frames[0].source == str(video)
    local = spotter.spot([clipspot.read_image(still)])[0]
    assert [w.text for w in words] == [w.text for w in local] and len(words) >= 3
    assert all(w.track_id is None for w in words)


async def _stream_missing(target: str, path: Path) -> None:
    async with clipspot.ClipSpotClient(target) as client:
        async for _ in client.stream_video(path):
            pass


async def _wait_nowhere() -> None:
    async with clipspot.ClipSpotClient("127.0.0.1:9") as client:  # the discard port: closed
        await client.wait_ready(timeout_s=0.5)


def test_async_client_errors_are_clipspot_errors(server, tmp_path):
    with pytest.raises(clipspot.ClipSpotError, match="no such video file"):
        asyncio.run(_stream_missing(server.target, tmp_path / "missing.mp4"))
    with pytest.raises(clipspot.ClipSpotError, match="no ClipSpot server answered"):
        asyncio.run(_wait_nowhere())


async def _paced() -> list[str]:
    """What the request side sends as credits arrive: never a payload without a credit."""
    from clipspot.aio_client import _Credits, _Failure, _requests
    from services.rpc.clipspot.v1 import spotting_pb2 as pb

    payloads = iter([pb.StreamRequest(chunk=pb.Chunk(data=bytes([n]))) for n in range(5)])
    credits = _Credits()
    requests = _requests(pb.StreamConfig(stream_id="s"), payloads, credits, _Failure())
    sent = [(await anext(requests)).WhichOneof("message")]  # the config needs no credit
    credits.grant(2)
    sent += [f"chunk {(await anext(requests)).chunk.seq}" for _ in range(2)]
    waiting = asyncio.ensure_future(anext(requests))
    await asyncio.sleep(0.05)
    sent.append("waits" if not waiting.done() else "sent without a credit")
    credits.grant(1)
    sent.append(f"chunk {(await waiting).chunk.seq}")
    credits.close()
    sent.append("stops" if [r async for r in requests] == [] else "sent after the end")
    return sent


def test_async_client_sends_one_message_per_credit():
    assert asyncio.run(_paced()) == ["config", "chunk 0", "chunk 1", "waits", "chunk 2", "stops"]
