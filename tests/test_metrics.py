"""Metrics, health and reflection of the embedded server, end to end: a real grpc.aio server on
loopback with its Prometheus endpoint, the real Spotter, a real synthetic video sent as JPEG
frames, /metrics scraped over HTTP while a stream is open and after it has closed."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_harness import (
    MAX_SIDE,
    BackgroundServer,
    config_request,
    extract_jpegs,
    frame_request,
    make_video,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2 as alpha
from grpc_reflection.v1alpha import reflection_pb2_grpc as alpha_grpc
from prometheus_client.parser import text_string_to_metric_families

from pipeline.decode import decode_image_bytes
from pipeline.runner import RunnerConfig, VideoRunner
from pipeline.spotter import Spotter
from pipeline.types import VideoFrame
from services.client import SpotClient, StreamOptions
from services.reflection import V1_SERVICE_NAME
from services.rpc.clipspot.v1 import spotting_pb2 as pb

Samples = dict[tuple[str, frozenset], float]


@pytest.fixture(scope="module")
def spotter() -> Spotter:
    return Spotter.load(max_side=MAX_SIDE)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("video")
    path, _ = make_video(folder)
    return extract_jpegs(path, folder / "frames")


@pytest.fixture(scope="module")
def server(spotter: Spotter):
    with BackgroundServer(spotter, metrics_port=0) as running:
        yield running


def scrape(server: BackgroundServer) -> Samples:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when absent (a counter not yet touched)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def run_locally(spotter: Spotter, jpegs: list[Path]) -> VideoRunner:
    """What `clipspot spot` does on these frames (the server runs the same VideoRunner)."""
    runner = VideoRunner(spotter, RunnerConfig())
    frames = [VideoFrame(i, None, decode_image_bytes(p.read_bytes())) for i, p in
              enumerate(jpegs)]
    for _ in runner.run(frames):
        pass
    return runner


def test_counters_follow_a_stream_while_open_and_after_close(server, spotter, jpegs) -> None:
    before = scrape(server)
    count = len(jpegs)
    finish = threading.Event()  # holds the request side open until the mid-stream scrape

    def payloads() -> Iterator[pb.StreamRequest]:
        for path in jpegs:
            yield frame_request(0, path.read_bytes())
        finish.wait(60)

    config = config_request(pb.INPUT_KIND_IMAGES, "cam-metrics").config
    results, open_tracks, reported, during = 0, set(), 0, None
    with SpotClient(server.target) as client:
        for response in client.stream_responses(config, payloads()):
            if response.WhichOneof("message") == "result":
                results += 1
            elif response.track.kind == pb.TRACK_EVENT_KIND_STARTED:
                open_tracks.add(response.track.track_id)
            elif response.track.kind == pb.TRACK_EVENT_KIND_ENDED:
                open_tracks.discard(response.track.track_id)
            if results == count and during is None:
                during = scrape(server)  # every frame answered; the stream is still open
                reported = len(open_tracks)  # started, not yet ended (confirmed tracks)
                finish.set()
    after = scrape(server)

    assert results == count
    stream = {"stream": "cam-metrics"}
    assert value(during, "clipspot_stream_frames_decoded_total", **stream) == count
    assert value(during, "clipspot_stream_frames_answered_total", **stream) == count
    assert value(during, "clipspot_active_streams") == 1
    assert value(during, "clipspot_queue_depth") == 0
    assert value(during, "clipspot_active_tracks") >= reported > 0  # live includes unconfirmed
    assert ("clipspot_stream_frames_decoded_total", frozenset(stream.items())) not in after

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("clipspot_frames_decoded_total") == count
    assert moved("clipspot_frames_answered_total") == count
    assert moved("clipspot_spot_latency_seconds_count") == count
    assert moved("clipspot_spot_latency_seconds_sum") > 0
    assert moved("clipspot_streams_ended_total", code="OK") == 1
    assert moved("clipspot_frames_dropped_total", policy="none") == 0
    local = run_locally(spotter, jpegs)
    assert moved("clipspot_words_read_total") == local.words_read > 0
    # keyframes only: the adaptive default follows the frames between them by motion
    assert count > moved("clipspot_keyframes_total") == local.frames_spotted > 0
    for gauge in ("clipspot_active_streams", "clipspot_active_tracks", "clipspot_queue_depth"):
        assert value(after, gauge) == 0, gauge


def test_dropped_frames_and_status_codes_are_counted(server, jpegs) -> None:
    before = scrape(server)
    options = StreamOptions(stream_id="live", drop_policy="keep_latest", max_queue=1)
    with SpotClient(server.target) as client:
        results = [i for i in client.stream_images(jpegs, options) if hasattr(i, "dropped")]
        bad = client.stream_responses(pb.StreamConfig(stream_id="bad"), iter(()))
        with pytest.raises(Exception, match="input_kind is unspecified"):
            list(bad)
    after = scrape(server)
    dropped = sum(1 for r in results if r.dropped)
    assert len(results) == len(jpegs)
    key = ("clipspot_frames_dropped_total", frozenset({"policy": "keep_latest"}.items()))
    assert after.get(key, 0) - before.get(key, 0) == dropped
    ended = "clipspot_streams_ended_total"
    assert value(after, ended, code="INVALID_ARGUMENT") - value(
        before, ended, code="INVALID_ARGUMENT") == 1


def test_prompt_cache_hits_and_misses(server, jpegs) -> None:
    before = scrape(server)
    with SpotClient(server.target) as client:
        for _ in range(2):  # the first encodes the prompt, the second finds it
            client.spot_image(jpegs[0].read_bytes(), prompt="a shop sign")
    after = scrape(server)
    lookups = "clipspot_prompt_cache_lookups_total"
    assert value(after, lookups, result="miss") - value(before, lookups, result="miss") == 1
    assert value(after, lookups, result="hit") - value(before, lookups, result="hit") >= 1
    stats = server.engine.cache.stats
    assert value(after, lookups, result="hit") == stats.local_hits + stats.redis_hits
    assert value(after, lookups, result="miss") == stats.misses


def _health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="clipspot.v1.TextSpotting"), timeout=10)
    return reply.status


def test_health_is_not_serving_until_the_model_is_set(spotter) -> None:
    """As `clipspot serve` runs: listening (and probed) before the model has loaded."""
    with BackgroundServer(spotter, engine_later=True) as server:
        assert _health(server.target) == health_pb2.HealthCheckResponse.NOT_SERVING
        server.set_engine()
        assert _health(server.target) == health_pb2.HealthCheckResponse.SERVING


def _v1_classes() -> tuple[type, type]:
    pool = descriptor_pool.Default()  # services.reflection added the v1 file to it
    return tuple(  # type: ignore[return-value]
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"grpc.reflection.v1.{n}"))
        for n in ("ServerReflectionRequest", "ServerReflectionResponse")
    )


def test_reflection_answers_v1_and_v1alpha(server) -> None:
    request_v1, response_v1 = _v1_classes()
    with grpc.insecure_channel(server.target) as channel:
        call_v1 = channel.stream_stream(
            f"/{V1_SERVICE_NAME}/ServerReflectionInfo",
            request_serializer=request_v1.SerializeToString,
            response_deserializer=response_v1.FromString,
        )
        asks = [request_v1(list_services=""),
                request_v1(file_containing_symbol=V1_SERVICE_NAME)]
        listed_v1, described = list(call_v1(iter(asks), timeout=10))
        stub = alpha_grpc.ServerReflectionStub(channel)
        (listed_alpha,) = stub.ServerReflectionInfo(
            iter([alpha.ServerReflectionRequest(list_services="")]), timeout=10)
    names_v1 = {s.name for s in listed_v1.list_services_response.service}
    names_alpha = {s.name for s in listed_alpha.list_services_response.service}
    assert names_v1 == names_alpha
    assert {"clipspot.v1.TextSpotting", "grpc.health.v1.Health", V1_SERVICE_NAME,
            "grpc.reflection.v1alpha.ServerReflection"} <= names_v1
    assert described.file_descriptor_response.file_descriptor_proto  # v1 describes itself
