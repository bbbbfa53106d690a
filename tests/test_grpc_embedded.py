"""The embedded gRPC service end to end: a real grpc.aio server on loopback, the real Spotter,
a real synthetic H.264 video (with ground truth) streamed as MPEG-TS, real clients."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_harness import MAX_SIDE, BackgroundServer, extract_jpegs, make_video
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from shared_data import SHARED_DATA

from pipeline.data.h264_clips import read_back_pts
from pipeline.decode import decode_image_bytes
from pipeline.errors import ClipSpotError
from pipeline.spotter import Spotter
from pipeline.types import FrameResult, TrackEvent
from services.cli.main import main as clipspot
from services.client import SpotClient, StreamOptions

IC15_IMAGE = SHARED_DATA / "ic15_train/images/img_901.jpg"


@pytest.fixture(scope="module")
def spotter() -> Spotter:
    return Spotter.load(max_side=MAX_SIDE)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = make_video(tmp_path_factory.mktemp("video"))
    return path


@pytest.fixture(scope="module")
def server(spotter: Spotter):
    with BackgroundServer(spotter) as running:
        yield running


@pytest.fixture(scope="module")
def reference(video: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """What `clipspot spot` prints for the video: the results every path must reproduce."""
    out = tmp_path_factory.mktemp("spot") / "spot.jsonl"
    # Both default to adaptive keyframes through the same VideoRunner (a stream's runner
    # lives with its call), so the server must print what the CLI prints.
    args = ["spot", str(video), "--max-side", str(MAX_SIDE), "--out", str(out)]
    assert clipspot(args) == 0
    lines = _read_jsonl(out)
    # With no words found, "same results on every path" would compare empty frames: no proof.
    assert sum(len(line["instances"]) for line in lines) > 0, "the weights found no words"
    return lines


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _as_dicts(results: list[FrameResult]) -> list[dict]:
    from pipeline.jsonl import frame_result_to_dict

    return [frame_result_to_dict(r) for r in results]


def assert_same_results(got: list[dict], want: list[dict]) -> None:
    """Identical frames, pts, texts and track ids; polygons within 1 px."""
    assert [g["frame"] for g in got] == [w["frame"] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g["pts"] == w["pts"], f"frame {g['frame']}"
        assert [(i["text"], i["track_id"]) for i in g["instances"]] == [
            (i["text"], i["track_id"]) for i in w["instances"]
        ], f"frame {g['frame']}"
        for gi, wi in zip(g["instances"], w["instances"], strict=True):
            gap = np.abs(np.asarray(gi["polygon"]) - np.asarray(wi["polygon"])).max()
            assert gap <= 1.0, f"frame {g['frame']}: polygon off by {gap:.2f} px"


def _split(items: list) -> tuple[list[FrameResult], list[TrackEvent]]:
    return ([i for i in items if isinstance(i, FrameResult)],
            [i for i in items if isinstance(i, TrackEvent)])


def test_stream_cli_matches_spot_cli(server, video: Path, reference, tmp_path: Path) -> None:
    out, events = tmp_path / "stream.jsonl", tmp_path / "events.jsonl"
    argv = ["stream", str(video), "--server", server.target, "--out", str(out),
            "--events", str(events)]
    assert clipspot(argv) == 0
    got = _read_jsonl(out)
    # Every frame of the container gets exactly one line, in order, with the container's pts.
    container_pts = read_back_pts(video)
    assert [g["frame"] for g in got] == list(range(len(container_pts)))
    assert [g["pts"] for g in got] == [round(p, 6) for p in container_pts]
    assert all(g["source"] == str(video) for g in got)
    assert_same_results(got, reference)
    # Track life cycle: each track seen in the results starts once and ends once, ends last.
    seen = {i["track_id"] for g in got for i in g["instances"]}
    kinds = [json.loads(line) for line in events.read_text().splitlines()]
    started = [e["track_id"] for e in kinds if e["event"] == "started"]
    ended = [e["track_id"] for e in kinds if e["event"] == "ended"]
    assert sorted(started) == sorted(set(started)) and set(started) >= seen
    assert sorted(ended) == sorted(started)


def test_every_frame_mode_matches_spot_every_frame(server, video: Path, tmp_path: Path) -> None:
    want, got = tmp_path / "spot.jsonl", tmp_path / "stream.jsonl"
    assert clipspot(["spot", str(video), "--every-frame", "--max-side", str(MAX_SIDE),
                     "--out", str(want)]) == 0
    assert clipspot(["stream", str(video), "--every-frame", "--server", server.target,
                     "--out", str(got)]) == 0
    assert_same_results(_read_jsonl(got), _read_jsonl(want))


def test_four_concurrent_streams_lose_no_frame(server, video: Path, reference, tmp_path) -> None:
    frames = len(read_back_pts(video))
    jpegs = extract_jpegs(video, tmp_path / "jpegs")
    streams = {
        "plain": lambda c: c.stream_video(video, StreamOptions(stream_id="plain")),
        "every2": lambda c: c.stream_video(video, StreamOptions(stream_id="k2", detect_every=2)),
        "drop": lambda c: c.stream_video(
            video, StreamOptions(stream_id="drop", drop_policy="drop_oldest", max_queue=2)),
        "jpegs": lambda c: c.stream_images(jpegs, StreamOptions(stream_id="jpegs")),
    }
    outcome: dict[str, object] = {}

    def consume(name: str) -> None:
        try:
            with SpotClient(server.target) as client:
                outcome[name] = list(streams[name](client))
        except Exception as err:  # reported by the assertion below
            outcome[name] = err

    threads = [threading.Thread(target=consume, args=(n,)) for n in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    for name in streams:
        assert not isinstance(outcome[name], BaseException), f"{name}: {outcome[name]}"
        results, events = _split(outcome[name])  # type: ignore[arg-type]
        assert [r.frame for r in results] == list(range(frames)), name
        assert {e.kind for e in events} <= {"started", "updated", "ended"}
    # Sharing the model thread with three other streams changes nothing in a stream's results.
    plain, _ = _split(outcome["plain"])  # type: ignore[arg-type]
    assert_same_results(_as_dicts(plain), reference)
    # Frames the drop policy skipped are still answered, flagged, with carried tracks only.
    drop, _ = _split(outcome["drop"])  # type: ignore[arg-type]
    known: set[int] = set()
    for result in drop:
        ids = {i.track_id for i in result.instances}
        if result.dropped:
            assert ids <= known
        known |= ids


def test_drop_policy_keep_latest_answers_every_frame(server, video: Path) -> None:
    with SpotClient(server.target) as client:
        options = StreamOptions(stream_id="latest", drop_policy="keep_latest")
        results, _ = _split(list(client.stream_video(video, options)))
    assert [r.frame for r in results] == list(range(len(read_back_pts(video))))
    # Drops are oldest first, so the newest frame is always spotted, whatever the timing.
    assert not results[-1].dropped


def test_health_serving_and_reflection(server) -> None:
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "clipspot.v1.TextSpotting"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
        names = {s.name for s in reply.list_services_response.service}
    assert {"clipspot.v1.TextSpotting", "grpc.health.v1.Health"} <= names


def test_spot_image_matches_the_spotter(server, spotter: Spotter) -> None:
    data = IC15_IMAGE.read_bytes()
    with SpotClient(server.target) as client:
        got = client.spot_image(data)
        with pytest.raises(ClipSpotError, match="INVALID_ARGUMENT: SpotImage: undecodable image"):
            client.spot_image(b"\xff\xd8 this is not a JPEG")
    (want,) = spotter.spot([decode_image_bytes(data)])
    assert [i.text for i in got] == [i.text for i in want]
    for g, w in zip(got, want, strict=True):
        assert g.track_id is None
        assert np.abs(g.polygon - w.polygon).max() <= 1.0
        assert abs(g.score - w.score) < 1e-6


def test_custom_prompt_is_encoded_once_for_every_stream(server, video: Path) -> None:
    prompt = "words written on a street sign"
    stats = server.engine.cache.stats
    before = stats.computations
    frames = len(read_back_pts(video))
    with SpotClient(server.target) as client:
        for name in ("p1", "p2"):
            options = StreamOptions(stream_id=name, prompt=prompt, detect_every=4)
            results, _ = _split(list(client.stream_video(video, options)))
            assert [r.frame for r in results] == list(range(frames))
        client.spot_image(IC15_IMAGE.read_bytes(), prompt=prompt)
    assert stats.computations - before == 1  # the text encoder ran for the first stream only


def test_the_model_checksum_comes_as_initial_metadata(server, spotter: Spotter) -> None:
    from services.rpc.clipspot.v1 import spotting_pb2 as pb
    from services.rpc.clipspot.v1 import spotting_pb2_grpc as pb_grpc
    from services.servicer import MODEL_METADATA_KEY

    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.TextSpottingStub(channel)
        request = pb.SpotImageRequest(image=IC15_IMAGE.read_bytes())
        _, call = stub.SpotImage.with_call(request, timeout=60)
    metadata = dict(call.initial_metadata())
    assert metadata[MODEL_METADATA_KEY] == spotter.checksum  # weights file + reader
