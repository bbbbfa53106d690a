"""ClipSpot on real Ray Serve (one local cluster per session) with a real redis-server.

One application serves every test here, deployed the way `serve deploy`/KubeRay deploy it (a
config: `services.ray_app:build_app` + args + per-deployment overrides), so a later config that
changes only TextSpotter's `num_replicas` is applied in place, as in production. Serve's gRPC
proxy listens on a free port; two TextSpotter replicas (so the shared prompt cache is really
shared); every replica at 0 CPUs so everything fits on two cores. Weights: the shipped file
when present, else a tiny randomly initialised model packed by the `weights_file` fixture.

Streams here are sent once, without the client's resume (`SpotClient.stream`), so a cut stream
fails the test instead of being resumed quietly.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.conftest import REPO_ROOT, RedisServer, free_port, redis_server_binary

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

from ray import serve  # noqa: E402
from ray.serve.config import gRPCOptions  # noqa: E402
from ray.serve.schema import ServeDeploySchema  # noqa: E402

from bench.common import scrape_counters  # noqa: E402
from pipeline.data.h264_clips import read_back_pts  # noqa: E402
from pipeline.data.synth_video import VideoConfig, write_video  # noqa: E402
from pipeline.decode import remux_to_mpegts  # noqa: E402
from pipeline.types import FrameResult, TrackEvent  # noqa: E402
from services.client import SpotClient, StreamOptions, stream_config  # noqa: E402
from services.prompt_cache import PromptKey  # noqa: E402
from services.ray_app import APP_NAME, GRPC_SERVICERS, ROUTE_PREFIX  # noqa: E402
from services.rpc.clipspot.v1 import spotting_pb2 as pb  # noqa: E402
from services.rpc.clipspot.v1 import spotting_pb2_grpc as pb_grpc  # noqa: E402

SPOTTER_REPLICAS = 2
# The application requires a bearer token (build_app's token_file), as a deployment on an open
# network should; every call here sends it, and one test checks the refusals.
TOKEN = f"ray-test-{uuid.uuid4().hex}"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
DEPLOY_TIMEOUT_S = 180  # replicas load the model on two shared, busy cores


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, list[float]]:
    path = tmp_path_factory.mktemp("ray_video") / "signs.mp4"
    write_video(VideoConfig(width=320, height=192, fps=10, seconds=1.2, seed=3), path)
    return path, read_back_pts(path)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> tuple[Path, list[float]]:
    """Long enough to stay open across replica scaling and a replica kill."""
    path = tmp_path_factory.mktemp("ray_video") / "long.mp4"
    write_video(VideoConfig(width=320, height=192, fps=10, seconds=3.2, seed=5), path)
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


# --- deploying and watching the application -------------------------------------------------


def deploy(args: dict, spotter_replicas: int) -> None:
    """Apply the application as a Serve config (what `serve deploy` and KubeRay do). With the
    same import path, args and runtime env, only the TextSpotter override changes: Serve then
    scales that deployment in place and leaves every other replica alone."""
    config = ServeDeploySchema.model_validate({"applications": [{
        "name": APP_NAME,
        "route_prefix": ROUTE_PREFIX,
        "import_path": "services.ray_app:build_app",
        "args": args,
        "runtime_env": {"env_vars": {"PYTHONPATH": str(REPO_ROOT)}},
        "deployments": [{"name": "TextSpotter", "num_replicas": spotter_replicas}],
    }]})
    serve.context._get_global_client().deploy_apps(config)


def spotter_states() -> dict[str, int]:
    status = serve.status().applications.get(APP_NAME)
    if status is None or "TextSpotter" not in status.deployments:
        return {}
    states = status.deployments["TextSpotter"].replica_states
    return {str(getattr(k, "value", k)): v for k, v in states.items()}


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = DEPLOY_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.25)


def wait_until_running(spotter_replicas: int) -> None:
    def running() -> bool:
        status = serve.status().applications.get(APP_NAME)
        return (status is not None and status.status == "RUNNING"
                and spotter_states() == {"RUNNING": spotter_replicas})

    wait_for(running, f"{APP_NAME} RUNNING with {spotter_replicas} TextSpotter replicas")


def replica_actors(deployment: str) -> set[str]:
    """Names of the live replica actors of one deployment (Serve names them
    SERVE_REPLICA::<app>#<deployment>#<id> in the `serve` namespace)."""
    prefix = f"SERVE_REPLICA::{APP_NAME}#{deployment}#"
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(prefix)}


@pytest.fixture(scope="module")
def ray_service(ray_cluster, service_redis, weights_file, tmp_path_factory):
    port = free_port()
    token_file = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    token_file.write_text(f"other-token\n{TOKEN}\n")
    serve.start(grpc_options=gRPCOptions(port=port, grpc_servicer_functions=GRPC_SERVICERS))
    args = {
        "weights": str(weights_file), "redis_url": service_redis.url, "torch_threads": 1,
        "ingress_cpus": 0, "spotter_cpus": 0, "max_batch_size": 4,
        "graceful_shutdown_timeout_s": 1, "token_file": str(token_file),
    }
    deploy(args, SPOTTER_REPLICAS)
    wait_until_running(SPOTTER_REPLICAS)
    yield {"target": f"127.0.0.1:{port}", "args": args,
           "spotter": serve.get_deployment_handle("TextSpotter", app_name=APP_NAME),
           "ingress": serve.get_deployment_handle("StreamIngress", app_name=APP_NAME)}
    serve.delete(APP_NAME)


# --- streaming ------------------------------------------------------------------------------


def chunk_requests(path: Path, chunk_bytes: int = 64 * 1024) -> Iterator[pb.StreamRequest]:
    return (pb.StreamRequest(chunk=pb.Chunk(data=c))
            for c in remux_to_mpegts(path, chunk_size=chunk_bytes))


def stream_once(
    target: str,
    path: Path,
    requests: Iterable[pb.StreamRequest] | None = None,
    on_result: Callable[[FrameResult], None] | None = None,
    **options,
) -> tuple[list[FrameResult], list[TrackEvent]]:
    """One StreamSpot call, no resume: a cut (UNAVAILABLE or any error) raises."""
    opts = StreamOptions(**options)
    config = stream_config(opts, pb.INPUT_KIND_MPEGTS, str(path))
    results, events = [], []
    with SpotClient(target, token=TOKEN) as client:
        client.wait_ready(60)
        for item in client.stream(config, requests or chunk_requests(path, opts.chunk_bytes)):
            if isinstance(item, FrameResult):
                results.append(item)
                if on_result is not None:
                    on_result(item)
            else:
                events.append(item)
    return results, events


def assert_every_frame_in_order(results: list[FrameResult], pts: list[float]) -> None:
    assert [r.frame for r in results] == list(range(len(pts)))
    assert [r.pts for r in results] == pytest.approx(pts, abs=1e-6)


def assert_same_words(
    got: tuple[list[FrameResult], list[TrackEvent]],
    expected: tuple[list[FrameResult], list[TrackEvent]],
) -> None:
    """Same texts and track ids per frame, polygons within 1 px, same track events."""
    for a_frame, b_frame in zip(got[0], expected[0], strict=True):
        assert [(i.text, i.track_id) for i in a_frame.instances] == [
            (i.text, i.track_id) for i in b_frame.instances
        ], f"frame {a_frame.frame}"
        for a, b in zip(a_frame.instances, b_frame.instances, strict=True):
            assert np.abs(a.polygon - b.polygon).max() <= 1.0
    assert [(e.kind, e.track_id, e.text) for e in got[1]] == [
        (e.kind, e.track_id, e.text) for e in expected[1]
    ]


def replica_stats(handle, replicas: int = SPOTTER_REPLICAS) -> dict:
    """Cache stats of every TextSpotter replica: ask until each has answered (routing is
    random)."""
    seen: dict = {}
    for _ in range(200):
        stats = handle.get_stats.remote().result()
        seen[stats["replica"]] = stats
        if len(seen) == replicas:
            return {k: dict(v["cache"]) for k, v in seen.items()}
    raise AssertionError(f"only {len(seen)} of {replicas} replicas answered")


class EmbeddedServerThread:
    """The embedded grpc.aio server (services/embedded_server.py) on its own loop in a thread."""

    def __init__(self, weights: Path) -> None:
        self.weights = weights
        self.port: int | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        from pipeline.spotter import Spotter
        from services.embedded_server import EmbeddedServer, ServerConfig
        from services.engines import LocalEngine

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


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("detect_every", [1, 0], ids=["every-frame", "default-adaptive"])
def test_ray_service_matches_embedded_server(ray_service, video, embedded_target, detect_every):
    path, pts = video
    ray_run = stream_once(ray_service["target"], path, stream_id="cmp",
                          detect_every=detect_every)
    local_run = stream_once(embedded_target, path, stream_id="cmp", detect_every=detect_every)
    assert_every_frame_in_order(ray_run[0], pts)
    assert_every_frame_in_order(local_run[0], pts)
    assert sum(len(r.instances) for r in local_run[0]) > 0, "no words found: nothing compared"
    assert_same_words(ray_run, local_run)


def test_two_replicas_share_one_redis_entry(ray_service, video, service_redis):
    import redis

    path, pts = video
    spotter = ray_service["spotter"]
    prompt = f"the words on shop signs {uuid.uuid4().hex[:8]}"
    before = replica_stats(spotter)
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(stream_once, ray_service["target"], path, prompt=prompt,
                            stream_id=f"prompt-{i}") for i in range(2)]
        for run in runs:
            assert_every_frame_in_order(run.result()[0], pts)
    # More frames with the prompt, concurrently, so both replicas surely detect some.
    image = np.full((96, 160, 3), 200, dtype=np.uint8)
    calls = [spotter.detect.remote(image, prompt) for _ in range(16)]
    assert all(isinstance(c.result(), list) for c in calls)
    after = replica_stats(spotter)

    delta = {r: {k: after[r][k] - before[r][k] for k in after[r]} for r in after}
    assert sum(d["computations"] for d in delta.values()) == 1  # one text-encoder run in all
    for counts in delta.values():  # each replica got the embedding: computed it, or read Redis
        assert counts["computations"] + counts["redis_hits"] == 1
    assert sum(d["redis_hits"] for d in delta.values()) == 1  # the other replica's hit
    assert spotter.check_prompt.remote(None).result() is None  # the default: no cache at all
    keys = redis.Redis.from_url(service_redis.url).keys("clipspot:emb:v1:*")
    assert len(keys) >= 1


def test_prompt_key_matches_what_replicas_store(ray_service, service_redis, weights_file):
    """The key layout docs/ray.md promises: weights checksum, context length, hashed prompt."""
    import redis

    from pipeline.spotter import Spotter

    spotter = Spotter.load(weights_file)
    prompt = f"key check {uuid.uuid4().hex[:8]}"
    assert ray_service["spotter"].check_prompt.remote(prompt).result() is None
    key = PromptKey(spotter.weights_checksum, prompt, spotter.context_length).redis_key()
    raw = redis.Redis.from_url(service_redis.url).get(key)
    assert raw is not None and len(raw) == spotter.embed_dim * 4
    assert np.frombuffer(raw, "<f4") == pytest.approx(spotter.encode_prompt(prompt), abs=1e-5)


def test_stream_survives_redis_killed_midway(ray_service, video, service_redis):
    path, pts = video
    prompt = f"after the crash {uuid.uuid4().hex[:8]}"

    def kill_redis_once(_result: FrameResult) -> None:
        if service_redis.process is not None and service_redis.process.poll() is None:
            service_redis.kill()

    try:
        results, _ = stream_once(ray_service["target"], path, on_result=kill_redis_once,
                                 stream_id="redis-dies", prompt=f"{prompt} (first)",
                                 chunk_bytes=4096)
        assert_every_frame_in_order(results, pts)
        # A new custom prompt with Redis dead: the replica computes it locally and serves.
        prompted, _ = stream_once(ray_service["target"], path, prompt=prompt,
                                  stream_id="no-redis")
        assert_every_frame_in_order(prompted, pts)
        stats = replica_stats(ray_service["spotter"])
        assert sum(s["redis_errors"] for s in stats.values()) >= 1
    finally:
        service_redis.start()


def settled_ray_metrics(port: int, quiet_s: float = 2.5, timeout_s: float = 30) -> dict:
    """A scrape that two scrapes `quiet_s` apart agree on (the agent exports every second)."""
    deadline = time.monotonic() + timeout_s
    last = scrape_counters(port)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = scrape_counters(port)
        if now.get("ray_clipspot_frames_answered_total") == last.get(
                "ray_clipspot_frames_answered_total"):
            return now
        last = now
    raise AssertionError(f"Ray's metrics did not settle within {timeout_s} s")


def test_ray_metrics_port_shows_the_stream_counters_move(ray_cluster, ray_service, video):
    """The same metrics as embedded mode, from the Ray deployments, under Ray's `ray_` prefix
    on the metrics agent's port (what the chart's PodMonitor scrapes)."""
    path, pts = video
    port = ray_cluster["metrics_port"]
    names = ("ray_clipspot_frames_decoded_total", "ray_clipspot_frames_answered_total",
             "ray_clipspot_spot_latency_seconds_count", "ray_clipspot_words_read_total",
             "ray_clipspot_keyframes_total")
    before = settled_ray_metrics(port)  # earlier tests' last frames exported first
    results, _ = stream_once(ray_service["target"], path, stream_id="scraped")
    assert_every_frame_in_order(results, pts)

    def moved() -> bool:
        after = scrape_counters(port)
        return all(after.get(n, 0.0) - before.get(n, 0.0) >= len(pts) for n in names[:3]) \
            and all(after.get(n, 0.0) > before.get(n, 0.0) for n in names[3:])

    wait_for(moved, f"{names} to grow by {len(pts)} frames on Ray's metrics port", 60)
    after = scrape_counters(port)
    assert after["ray_clipspot_frames_answered_total"] - before.get(
        "ray_clipspot_frames_answered_total", 0.0) == len(pts)
    assert "ray_clipspot_active_streams" in after  # a gauge each ingress replica reports


def test_four_concurrent_streams_lose_no_frame(ray_service, video):
    path, pts = video
    with ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(stream_once, ray_service["target"], path, stream_id=f"cam-{i}")
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
            for _ in stub.StreamSpot(iter(requests), metadata=AUTH):
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
        good = pool.submit(stream_once, ray_service["target"], path, stream_id="good")
        error = raw_stream(ray_service["target"], requests)
        results, _ = good.result()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in error.details()
    assert_every_frame_in_order(results, pts)
    # The same words as the embedded server: one service core for both.
    assert error.details() == raw_stream(embedded_target, requests).details()


def test_health_and_unary_spot_image(ray_service, weights_file):
    import cv2
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from pipeline.spotter import Spotter
    from services.servicer import MODEL_METADATA_KEY

    with grpc.insecure_channel(ray_service["target"]) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        _, png = cv2.imencode(".png", np.full((64, 96, 3), 255, dtype=np.uint8))
        response, call = pb_grpc.TextSpottingStub(channel).SpotImage.with_call(
            pb.SpotImageRequest(image=png.tobytes()), metadata=AUTH)
        assert (response.width, response.height) == (96, 64)
        # Serve's proxy has no initial metadata: the model checksum comes as trailing metadata.
        expected = Spotter.load(weights_file).checksum
        assert dict(call.trailing_metadata())[MODEL_METADATA_KEY] == expected
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.TextSpottingStub(channel).SpotImage(pb.SpotImageRequest(image=b"junk"),
                                                        metadata=AUTH)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "SpotImage: undecodable image" in caught.value.details()


@pytest.mark.parametrize(
    ("metadata", "code"),
    [((), grpc.StatusCode.UNAUTHENTICATED),
     ((("authorization", "Bearer not-a-known-token"),), grpc.StatusCode.PERMISSION_DENIED)],
    ids=["no-token", "wrong-token"],
)
def test_calls_without_a_known_token_are_refused(ray_service, video, metadata, code):
    """Tokens in Ray mode: the StreamIngress replica checks them as the embedded server's
    interceptor does, before the service sees a byte; health stays open (probes)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    path, _ = video
    config = stream_config(StreamOptions(stream_id="intruder"), MPEGTS, str(path))
    requests = [pb.StreamRequest(config=config), *list(chunk_requests(path))[:2]]
    with grpc.insecure_channel(ray_service["target"]) as channel:
        stub = pb_grpc.TextSpottingStub(channel)
        with pytest.raises(grpc.RpcError) as streamed:
            for _ in stub.StreamSpot(iter(requests), metadata=metadata):
                pass
        with pytest.raises(grpc.RpcError) as unary:
            stub.SpotImage(pb.SpotImageRequest(image=b"\x89PNG"), metadata=metadata)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    for caught in (streamed.value, unary.value):
        assert caught.code() == code, caught.details()
        assert "token" in caught.details()
        assert TOKEN not in caught.details()
    assert health.status == health_pb2.HealthCheckResponse.SERVING


class GatedChunks:
    """A live source: the video's chunks, paced, held before the chunks in `gates`."""

    def __init__(self, chunks: list[bytes], gates: dict[int, threading.Event]) -> None:
        self.chunks = chunks
        self.gates = gates

    def __iter__(self) -> Iterator[pb.StreamRequest]:
        for index, chunk in enumerate(self.chunks):
            if index in self.gates:
                assert self.gates[index].wait(DEPLOY_TIMEOUT_S), f"gate {index} never opened"
            time.sleep(0.02)
            yield pb.StreamRequest(chunk=pb.Chunk(data=chunk))


def phase_gates(chunks: list[bytes], phases: int) -> list[int]:
    """Chunk indices that split the video into `phases` + 1 parts which each complete frames.
    The decoder answers nothing until it has probed the stream (here the first ~80 KB, then
    a burst of frames) and one frame per chunk after that, so the cuts go after the burst."""
    from services.frame_source import FrameSource
    from services.stream_types import Payload, StreamSettings

    settings = StreamSettings(
        stream_id="probe", kind="mpegts", raw_shape=None, prompt=None, detect_every=1,
        fixed_keyframes=False, max_fps=0.0, drop_policy="none", max_queue=8, resume_from=0,
        first_frame=0)
    source = FrameSource(settings)
    first = next(i for i, chunk in enumerate(chunks)
                 if source.decode(Payload(kind="chunk", seq=i, data=chunk)))
    source.discard()
    rest = len(chunks) - first - 1
    assert rest >= 2 * phases, f"video too short to gate: {len(chunks)} chunks, first {first}"
    return [first + 1 + rest * i // (phases + 1) for i in range(1, phases + 1)]


def test_spotter_scaling_and_a_killed_replica_cut_no_stream(ray_service, long_video):
    """4 live streams while TextSpotter goes 2 -> 3 replicas, loses one to `ray.kill`, then
    goes to 1: every frame comes once, in order, with the words of an undisturbed run, and the
    StreamIngress replica holding the streams is never restarted. (Runs after the others
    that use the application: it asks for 2 replicas again at the end but does not wait.)"""
    path, pts = long_video
    target, args = ray_service["target"], ray_service["args"]
    reference = stream_once(target, path, stream_id="live", detect_every=1)
    assert_every_frame_in_order(reference[0], pts)
    ingress_before = replica_actors("StreamIngress")
    spotters_before = replica_actors("TextSpotter")
    assert len(ingress_before) == 1 and len(spotters_before) == SPOTTER_REPLICAS
    retries_before = ray_service["ingress"].engine_retries.remote().result()

    chunks = list(remux_to_mpegts(path, chunk_size=2048))
    phases = [threading.Event() for _ in range(3)]  # opened one by one, between the events
    gates = dict(zip(phase_gates(chunks, len(phases)), phases, strict=True))
    answered = [0] * 4
    lock = threading.Condition()

    def count(stream: int) -> Callable[[FrameResult], None]:
        def seen(_result: FrameResult) -> None:
            with lock:
                answered[stream] += 1
                lock.notify_all()
        return seen

    def progress(at_least: int) -> None:
        with lock:
            assert lock.wait_for(lambda: min(answered) >= at_least, DEPLOY_TIMEOUT_S), (
                f"streams stalled at {answered} frames (waiting for {at_least} each)")

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(4) as pool:
            runs = [pool.submit(stream_once, target, path, GatedChunks(chunks, gates),
                                count(i), stream_id="live", detect_every=1)
                    for i in range(4)]
            try:
                progress(1)  # every stream is open and answered
                deploy(args, 3)  # scale up while frames flow
                phases[0].set()
                wait_for(lambda: spotter_states() == {"RUNNING": 3}, "3 TextSpotter replicas")
                assert spotters_before < replica_actors("TextSpotter")  # the old ones were kept
                with lock:
                    mark = min(answered)
                phases[1].set()
                progress(mark + 1)  # frames are in flight on all three replicas...
                victim = sorted(replica_actors("TextSpotter"))[0]
                ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)  # ...kill one
                progress(mark + 2)
                deploy(args, 1)  # scale down with frames in flight
                phases[2].set()
            finally:
                for gate in phases:  # a failure above must not leave streams held at a gate
                    gate.set()
            outcomes = [run.result(timeout=DEPLOY_TIMEOUT_S) for run in runs]
        retries = ray_service["ingress"].engine_retries.remote().result() - retries_before
    finally:
        deploy(args, SPOTTER_REPLICAS)  # for any test after this one (not waited for here)
    elapsed = time.monotonic() - started

    for outcome in outcomes:
        assert_every_frame_in_order(outcome[0], pts)
        assert_same_words(outcome, reference)
    assert replica_actors("StreamIngress") == ingress_before  # the streams' state never moved
    print(f"disturbed run: {elapsed:.1f} s, {retries} spotter calls repeated on another replica")


def test_a_lost_ingress_cuts_its_streams_and_the_client_resumes(ray_service, long_video):
    """The ingress holds the streams, so losing it cuts them; `SpotClient.stream_video`
    (what `clipspot stream` uses) reconnects and resumes: every frame once, in order, and the
    resumed stream's track ids above every id seen before the cut. (Runs last: the
    application gets a new ingress replica.)"""
    path, pts = long_video
    (victim,) = replica_actors("StreamIngress")
    items: list[FrameResult | TrackEvent] = []
    with SpotClient(ray_service["target"], token=TOKEN) as client:
        client.wait_ready(60)
        for item in client.stream_video(path, StreamOptions(stream_id="resume", detect_every=1,
                                                            retry_s=DEPLOY_TIMEOUT_S)):
            items.append(item)
            if isinstance(item, FrameResult) and item.frame == 0:
                ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        resumed_at = client.resumed_at
    results = [i for i in items if isinstance(i, FrameResult)]
    assert_every_frame_in_order(results, pts)
    assert replica_actors("StreamIngress") != {victim}  # really a new ingress replica
    assert resumed_at and resumed_at[0] >= 1, f"the stream was never cut ({resumed_at})"
    cut = resumed_at[-1]
    before = {i.track_id for r in results[:cut] for i in r.instances}
    after = {i.track_id for r in results[cut:] for i in r.instances}
    assert not after or min(after) > max(before, default=0), "a track id was used twice"
