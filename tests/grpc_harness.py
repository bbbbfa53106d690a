"""Test harness for the gRPC service: a real embedded server on loopback, in a thread.

    with BackgroundServer(spotter) as server:      # grpc.aio server on 127.0.0.1:<free port>
        client = SpotClient(server.target)

The server runs its own event loop in a background thread, exactly as `clipspot serve` runs it
in the main thread; the tests talk to it through real gRPC channels.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import av

from pipeline.data.synth_video import VideoConfig, write_video
from pipeline.data.video_gt import VideoGroundTruth
from pipeline.runner import RunnerConfig
from pipeline.spotter import Spotter
from services.embedded_server import EmbeddedServer, ServerConfig
from services.engines import LocalEngine
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.stream_types import SessionLimits
from services.tls import ServerTls

# Small frames and a small model input keep the CPU cost of each test down on 2 shared cores.
MAX_SIDE = 320
VIDEO = VideoConfig(width=320, height=192, fps=10.0, seconds=2.4, seed=7,
                    scenarios=("ticker", "signs"))


def make_video(folder: Path) -> tuple[Path, VideoGroundTruth]:
    """The synthetic video `clipspot synth video` would write, with its ground truth."""
    path = folder / "synth.mp4"
    return path, write_video(VIDEO, path)


def extract_jpegs(video: Path, folder: Path) -> list[Path]:
    """The video's frames as JPEG files (a 'folder of images' input)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            path = folder / f"frame_{index:04d}.jpg"
            frame.to_image().save(path, quality=92)
            paths.append(path)
    return paths


class BackgroundServer:
    """An EmbeddedServer on a free loopback port, served from a background thread."""

    def __init__(
        self,
        spotter: Spotter,
        limits: SessionLimits | None = None,
        max_batch: int = 4,
        runner: RunnerConfig | None = None,
        drain_grace_s: float = 20.0,
        metrics_port: int | None = None,
        engine_later: bool = False,
        tls: ServerTls | None = None,
        tokens: tuple[bytes, ...] = (),
    ) -> None:
        """metrics_port: 0 serves /metrics on a free port. engine_later: start without the
        model (health NOT_SERVING, as `clipspot serve` while loading) until `set_engine()`.
        tls / tokens: as `clipspot serve --tls-cert/--tls-key/--tls-client-ca/--token-file`."""
        self.engine = LocalEngine(spotter, max_batch=max_batch)
        config = ServerConfig(port=0, host="127.0.0.1", drain_grace_s=drain_grace_s,
                              limits=limits or SessionLimits(), runner=runner or RunnerConfig(),
                              metrics_port=metrics_port, tls=tls, tokens=tokens)
        self._config = config
        self._engine_later = engine_later
        self.server: EmbeddedServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="grpc-server", daemon=True)

    @property
    def target(self) -> str:
        assert self.server is not None and self.server.port
        return f"127.0.0.1:{self.server.port}"

    @property
    def metrics_url(self) -> str:
        assert self.server is not None and self.server.metrics_port
        return f"http://127.0.0.1:{self.server.metrics_port}/metrics"

    def set_engine(self) -> None:
        """What `clipspot serve` does once the model has loaded (for `engine_later`)."""
        assert self._loop is not None and self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.set_engine(self.engine), self._loop).result(60)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            engine = None if self._engine_later else self.engine
            self.server = EmbeddedServer(engine, self._config)
            await self.server.start()
            self._started.set()
            await self.server.wait()

        try:
            asyncio.run(main())
        except BaseException as err:  # surfaced by start()/stop() in the test thread
            self._error = err
            self._started.set()

    def start(self) -> BackgroundServer:
        self._thread.start()
        self._started.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def request_stop(self) -> None:
        """What SIGTERM does in `clipspot serve`: drain, then stop."""
        assert self._loop is not None and self.server is not None
        self._loop.call_soon_threadsafe(self.server.request_stop)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.request_stop()
            self._thread.join(60)
        if self._error is not None:
            raise self._error

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def config_request(kind: int, stream_id: str = "test", **fields: object) -> pb.StreamRequest:
    return pb.StreamRequest(config=pb.StreamConfig(stream_id=stream_id, input_kind=kind, **fields))


def chunk_request(seq: int, data: bytes) -> pb.StreamRequest:
    return pb.StreamRequest(chunk=pb.Chunk(seq=seq, data=data))


def frame_request(seq: int, data: bytes, pts: float | None = None) -> pb.StreamRequest:
    frame = pb.Frame(seq=seq, data=data)
    if pts is not None:
        frame.pts = pts
    return pb.StreamRequest(frame=frame)
