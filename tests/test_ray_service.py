"""ClipSpot on real Ray Serve (one local cluster per session) with a real redis-server.

One deployment of the application serves every test here: Serve's gRPC proxy on a free port,
two TextSpotter replicas (so the shared prompt cache is really shared), CPU-packed replicas
(`replica_cpus: 0`) so everything fits on two cores. Weights: the shipped file when present,
else a tiny randomly initialised model packed by the `weights_file` fixture (same code path,
just fewer words found).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.conftest import RedisServer, free_port, redis_server_binary

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

from ray import serve  # noqa: E402
from ray.serve.config import gRPCOptions  # noqa: E402

from pipeline.data.h264_clips import read_back_pts  # noqa: E402
from pipeline.data.synth_video import VideoConfig, write_video  # noqa: E402
from pipeline.types import FrameResult, TrackEvent  # noqa: E402
from services.client import SpotClient, StreamOptions  # noqa: E402
from services.prompt_cache import PromptKey  # noqa: E402
from services.ray_app import APP_NAME, GRPC_SERVICERS, ROUTE_PREFIX, build_app  # noqa: E402
from services.rpc.clipspot.v1 import spotting_pb2 as pb  # noqa: E402
from services.rpc.clipspot.v1 import spotting_pb2_grpc as pb_grpc  # noqa: E402


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, list[float]]:
    path = tmp_path_factory.mktemp("ray_video") / "signs.mp4"
    write_video(VideoConfig(width=320, height=192, fps=10, seconds=1.2, seed=3), path)
    return path, read_back_pts(path)


@pytest.fixture(scope="module")
def service_redis():
    """The service's own Redis (a test kills and restarts it; the shared one stays up)."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary")
    server = RedisServer(binary).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ray_service(ray_cluster, service_redis, weights_file):
    port = free_port()
    serve.start(grpc_options=gRPCOptions(port=port, grpc_servicer_functions=GRPC_SERVICERS))
    app = build_app({
        "weights": str(weights_file), "redis_url": service_redis.url, "torch_threads": 1,
        "spotter_replicas": 2, "replica_cpus": 0, "spotter_cpus": 0,
        "max_batch_size": 4, "batch_wait_timeout_s": 0.005,
        "graceful_shutdown_timeout_s": 0.5,
    })
    serve.run(app, name=APP_NAME, route_prefix=ROUTE_PREFIX)
    yield {"target": f"127.0.0.1:{port}",
           "spotter": serve.get_deployment_handle("TextSpotter", app_name=APP_NAME)}
    serve.delete(APP_NAME)


def stream_video(target: str, path: Path, **options) -> tuple[list[FrameResult], list[TrackEvent]]:
    with SpotClient(target) as client:
        client.wait_ready(30)
        items = list(client.stream_video(path, StreamOptions(**options)))
    return ([i for i in items if isinstance(i, FrameResult)],
            [i for i in items if isinstance(i, TrackEvent)])


def assert_every_frame_in_order(results: list[FrameResult], pts: list[float]) -> None:
    assert [r.frame for r in results] == list(range(len(pts)))
    assert [r.pts for r in results] == pytest.approx(pts, abs=1e-6)


def replica_stats(handle, replicas: int = 2) -> dict:
    """Stats of every TextSpotter replica: ask until each has answered (routing is random)."""
    seen: dict = {}
    for _ in range(200):
        stats = handle.get_stats.remote().result()
        seen[stats.replica] = stats
        if len(seen) == replicas:
            return {k: dict(v.cache) for k, v in seen.items()}
    raise AssertionError(f"only {len(seen)} of {replicas} replicas answered")


class EmbeddedServerThread:
    """The embedded grpc.aio server (services/grpc_server.py) on its own loop in a thread."""

    def __init__(self, weights: Path) -> None:
        self.weights = weights
        self.port: int | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        from pipeline.spotter import Spotter
        from services.grpc_server import EmbeddedServer, ServerConfig
        from services.local_engine import LocalEngine

        engine = LocalEngine(Spotter.load(self.weights))
        self.server = EmbeddedServer(engine, ServerConfig(port=0, host="127.0.0.1",
                                                          drain_grace_s=1))
        self.port = await self.server.start()
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self.server.wait()

    def __enter__(self) -> str:
        self._thread.start()
        assert self._ready.wait(120), "embedded server did not start"
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self.server.request_stop)
        self._thread.join(30)


@pytest.fixture(scope="module")
def embedded_target(weights_file):
    with EmbeddedServerThread(weights_file) as target:
        yield target


def test_ray_service_matches_embedded_server(ray_service, video, embedded_target):
    path, pts = video
    ray_results, ray_events = stream_video(ray_service["target"], path, stream_id="cmp")
    local_results, local_events = stream_video(embedded_target, path, stream_id="cmp")
    assert_every_frame_in_order(ray_results, pts)
    assert_every_frame_in_order(local_results, pts)
    assert sum(len(r.instances) for r in local_results) > 0, "no words found: nothing compared"
    for ray_frame, local_frame in zip(ray_results, local_results, strict=True):
        assert [(i.text, i.track_id) for i in ray_frame.instances] == [
            (i.text, i.track_id) for i in local_frame.instances
        ]
        for a, b in zip(ray_frame.instances, local_frame.instances, strict=True):
            assert np.abs(a.polygon - b.polygon).max() <= 1.0
    assert [(e.kind, e.track_id, e.text) for e in ray_events] == [
        (e.kind, e.track_id, e.text) for e in local_events
    ]


def test_two_replicas_share_one_redis_entry(ray_service, video, service_redis):
    import redis

    path, pts = video
    spotter = ray_service["spotter"]
    prompt = f"the words on shop signs {uuid.uuid4().hex[:8]}"
    before = replica_stats(spotter)
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(stream_video, ray_service["target"], path, prompt=prompt,
                            stream_id=f"prompt-{i}") for i in range(2)]
        for run in runs:
            assert_every_frame_in_order(run.result()[0], pts)
    # More frames with the prompt, concurrently, so both replicas surely spot some.
    image = np.full((96, 160, 3), 200, dtype=np.uint8)
    calls = [spotter.spot.remote(image, prompt) for _ in range(16)]
    assert all(isinstance(c.result(), list) for c in calls)
    after = replica_stats(spotter)

    delta = {r: {k: after[r][k] - before[r][k] for k in after[r]} for r in after}
    assert sum(d["computations"] for d in delta.values()) == 1  # one text-encoder run in all
    for counts in delta.values():  # each replica got the embedding: computed it, or read Redis
        assert counts["computations"] + counts["redis_hits"] == 1
    assert sum(d["redis_hits"] for d in delta.values()) == 1  # the other replica's hit
    dims = spotter.prepare_prompt.remote(None).result()
    assert dims is None  # the default prompt never touches the cache
    keys = redis.Redis.from_url(service_redis.url).keys("clipspot:emb:v1:*")
    assert len(keys) >= 1


def test_prompt_key_matches_what_replicas_store(ray_service, service_redis, weights_file):
    """The key layout docs/ray.md promises: weights checksum, context length, hashed prompt."""
    import redis

    from pipeline.spotter import Spotter

    spotter = Spotter.load(weights_file)
    prompt = f"key check {uuid.uuid4().hex[:8]}"
    ray_service["spotter"].prepare_prompt.remote(prompt).result()
    key = PromptKey(spotter.weights_checksum, prompt, spotter.context_length).redis_key()
    raw = redis.Redis.from_url(service_redis.url).get(key)
    assert raw is not None and len(raw) == spotter.embed_dim * 4
    assert np.frombuffer(raw, "<f4") == pytest.approx(spotter.encode_prompt(prompt), abs=1e-5)


def test_stream_survives_redis_killed_midway(ray_service, video, service_redis):
    path, pts = video
    spotter = ray_service["spotter"]
    prompt = f"after the crash {uuid.uuid4().hex[:8]}"
    started = threading.Event()

    def stream_with_kill() -> list[FrameResult]:
        results = []
        options = StreamOptions(stream_id="redis-dies", prompt=f"{prompt} (first)",
                                chunk_bytes=4096)
        with SpotClient(ray_service["target"]) as client:
            for item in client.stream_video(path, options):
                if isinstance(item, FrameResult):
                    results.append(item)
                    if not started.is_set():
                        started.set()
                        service_redis.kill()
        return results

    try:
        results = stream_with_kill()
        assert_every_frame_in_order(results, pts)
        # A new custom prompt with Redis dead: the replica computes it locally and serves.
        prompted, _ = stream_video(ray_service["target"], path, prompt=prompt,
                                   stream_id="no-redis")
        assert_every_frame_in_order(prompted, pts)
        stats = replica_stats(spotter)
        assert sum(s["redis_errors"] for s in stats.values()) >= 1
    finally:
        service_redis.start()


def test_four_concurrent_streams_lose_no_frame(ray_service, video):
    path, pts = video
    with ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(stream_video, ray_service["target"], path, stream_id=f"cam-{i}")
                for i in range(4)]
        outcomes = [run.result() for run in runs]
    for results, _events in outcomes:
        assert_every_frame_in_order(results, pts)
    # Independent trackers: every stream numbers its own tracks the same way.
    ids = [[tuple(i.track_id for i in r.instances) for r in results] for results, _ in outcomes]
    assert ids[1:] == ids[:1] * 3


def raw_stream(target: str, requests: list[pb.StreamRequest]) -> grpc.RpcError:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.TextSpottingStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            for _ in stub.StreamSpot(iter(requests)):
                pass
    return caught.value


MPEGTS = pb.INPUT_KIND_MPEGTS


@pytest.mark.parametrize(
    ("requests", "expected"),
    [
        ([pb.StreamRequest(chunk=pb.Chunk(seq=0, data=b"\x47" * 188))],
         "config missing: the first message must be a StreamConfig, got a chunk message"),
        ([pb.StreamRequest(config=pb.StreamConfig(stream_id="bad", input_kind=MPEGTS)),
          pb.StreamRequest(chunk=pb.Chunk(seq=3, data=b"\x47" * 188))],
         "stream 'bad': sequence gap: expected seq 0, got seq 3"),
        ([pb.StreamRequest(config=pb.StreamConfig(stream_id="bad", input_kind=MPEGTS)),
          pb.StreamRequest(chunk=pb.Chunk(seq=0, data=b"not a transport stream" * 20))],
         "stream 'bad' seq 0: corrupt"),
    ],
    ids=["config-missing", "sequence-gap", "corrupt-chunk"],
)
def test_bad_stream_fails_alone_with_invalid_argument(
    ray_service, video, embedded_target, requests, expected
):
    path, pts = video
    with ThreadPoolExecutor(1) as pool:
        good = pool.submit(stream_video, ray_service["target"], path, stream_id="good")
        error = raw_stream(ray_service["target"], requests)
        results, _ = good.result()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in error.details()
    assert_every_frame_in_order(results, pts)
    # The same words as the embedded server: one state machine for both.
    assert error.details() == raw_stream(embedded_target, requests).details()


def test_health_and_unary_spot_image(ray_service, video, weights_file):
    import cv2
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(ray_service["target"]) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        _, png = cv2.imencode(".png", np.full((64, 96, 3), 255, dtype=np.uint8))
        response, call = pb_grpc.TextSpottingStub(channel).SpotImage.with_call(
            pb.SpotImageRequest(image=png.tobytes()))
        assert (response.width, response.height) == (96, 64)
        # Serve's proxy has no initial metadata: the model checksum comes as trailing metadata.
        from pipeline.spotter import Spotter
        from services.grpc_server import MODEL_METADATA_KEY

        expected = Spotter.load(weights_file).checksum
        assert dict(call.trailing_metadata())[MODEL_METADATA_KEY] == expected
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.TextSpottingStub(channel).SpotImage(pb.SpotImageRequest(image=b"junk"))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "SpotImage: undecodable image" in caught.value.details()
