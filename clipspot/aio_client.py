"""Asyncio client for the ClipSpot gRPC service (`clipspot serve`, embedded or on Ray Serve).

    async with ClipSpotClient("localhost:50051") as client:
        await client.wait_ready()
        words = await client.spot_image(Path("photo.jpg").read_bytes())
        async for item in client.stream_video("clip.mp4"):
            if isinstance(item, FrameResult): ...      # one per frame, in order
            else: ...                                  # TrackEvent: started / updated / ended

The asyncio twin of services/client.py's SpotClient, sharing its protocol pieces: the
StreamConfig (`stream_config`), the protobuf conversions (services/grpc_edge.py) and the credit
rule: after the config, one message per credit the server granted (the server ends a stream
that sends more with RESOURCE_EXHAUSTED). It does not resume after a cut as SpotClient does:
a dropped connection or a draining server ends the iteration with ClipSpotError.
TLS (`tls=ClientTls(...)`) and a bearer token (`token=...`) as SpotClient.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from pipeline.decode import remux_to_mpegts
from pipeline.errors import ClipSpotError
from pipeline.types import FrameResult, TextInstance, TrackEvent
from services.auth import bearer_metadata
from services.client import CHANNEL_OPTIONS, StreamOptions, rpc_error_as_clipspot, stream_config
from services.grpc_edge import frame_result_from_proto, instance_from_proto, track_event_from_proto
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.rpc.clipspot.v1 import spotting_pb2_grpc as pb_grpc
from services.tls import ClientTls

Item = FrameResult | TrackEvent


class ClipSpotClient:
    """An asyncio channel to one server; several streams may run on it at once.

    Create it inside the event loop that uses it (grpc.aio binds the channel to that loop).
    """

    def __init__(
        self,
        target: str,
        timeout_s: float | None = None,
        tls: ClientTls | None = None,
        token: str | None = None,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s  # None: long-lived streams have no deadline
        if tls is None:
            self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.secure_channel(target, tls.credentials(),
                                                    options=CHANNEL_OPTIONS)
        self._metadata = bearer_metadata(token)
        self._stub = pb_grpc.TextSpottingStub(self._channel)

    async def __aenter__(self) -> ClipSpotClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Wait until the server answers; ClipSpotError after `timeout_s`."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout_s)
        except TimeoutError:
            raise ClipSpotError(f"{self.target}: no ClipSpot server answered within "
                                f"{timeout_s:.0f} s") from None

    async def spot_image(self, image: bytes, prompt: str | None = None) -> list[TextInstance]:
        """One encoded image (JPEG/PNG bytes) -> its words (track_id None)."""
        request = pb.SpotImageRequest(image=image, prompt=prompt or "")
        try:
            response = await self._stub.SpotImage(request, timeout=self.timeout_s,
                                                  metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            raise rpc_error_as_clipspot(self.target, err) from None
        return [instance_from_proto(i) for i in response.instances]

    def stream_video(
        self, path: str | Path, options: StreamOptions | None = None
    ) -> AsyncIterator[Item]:
        """Remux a video file to MPEG-TS (no re-encoding) and stream it: each frame's
        FrameResult (source: `path`), followed by the TrackEvents it caused."""
        options = options or StreamOptions()
        config = stream_config(options, pb.INPUT_KIND_MPEGTS, str(path))
        chunks = remux_to_mpegts(path, chunk_size=options.chunk_bytes)
        payloads = (pb.StreamRequest(chunk=pb.Chunk(data=c)) for c in chunks)
        return self.stream(config, payloads, lambda _frame: str(path))

    def stream_images(
        self, paths: Iterable[str | Path], options: StreamOptions | None = None
    ) -> AsyncIterator[Item]:
        """Stream encoded image files as consecutive frames (tracked; pts None)."""
        options = options or StreamOptions()
        paths = [Path(p) for p in paths]
        config = stream_config(options, pb.INPUT_KIND_IMAGES, str(paths[0].parent) if paths else "")
        payloads = (pb.StreamRequest(frame=pb.Frame(data=p.read_bytes())) for p in paths)
        return self.stream(config, payloads, lambda frame: str(paths[frame]))

    async def stream(
        self,
        config: pb.StreamConfig,
        payloads: Iterable[pb.StreamRequest],
        source_of: Callable[[int], str],
    ) -> AsyncIterator[Item]:
        """The general form: a config, then Chunk/Frame requests (seq filled in here), paced
        by credits; `source_of(frame_index)` names each result's source."""
        credits, failure = _Credits(), _Failure()
        requests = _requests(config, iter(payloads), credits, failure)
        call = self._stub.StreamSpot(requests, timeout=self.timeout_s, metadata=self._metadata)
        try:
            async for response in call:
                which = response.WhichOneof("message")
                if which == "credits":
                    credits.grant(response.credits.grant)
                elif which == "result":
                    yield frame_result_from_proto(response.result, source_of(response.result.frame))
                else:
                    yield track_event_from_proto(response.track)
        except grpc.aio.AioRpcError as err:
            raise failure.error or rpc_error_as_clipspot(self.target, err) from None
        finally:
            credits.close()
            call.cancel()
        if failure.error is not None:
            raise failure.error


class _Credits:
    """Messages the server allows; the request generator waits on it (one event loop)."""

    def __init__(self) -> None:
        self._available = 0
        self._closed = False
        self._changed = asyncio.Event()

    def grant(self, count: int) -> None:
        self._available += count
        self._changed.set()

    def close(self) -> None:
        self._closed = True
        self._changed.set()

    async def take(self) -> bool:
        """Wait for one credit; False once the call is over (stop sending)."""
        while not self._available and not self._closed:
            self._changed.clear()
            await self._changed.wait()
        if self._closed:
            return False
        self._available -= 1
        return True


@dataclass
class _Failure:
    """An error met while producing payloads, raised in the caller's task: gRPC would
    otherwise turn it into a cancelled call."""

    error: ClipSpotError | None = None


async def _requests(
    config: pb.StreamConfig,
    payloads: Iterator[pb.StreamRequest],
    credits: _Credits,
    failure: _Failure,
) -> AsyncIterator[pb.StreamRequest]:
    """The config, then one payload per credit. Payloads are produced in a worker thread
    (remuxing reads the file) only once a credit allows sending them."""
    yield pb.StreamRequest(config=config)
    seq = config.resume_from
    while await credits.take():
        try:
            request = await asyncio.to_thread(next, payloads, None)
        except (ClipSpotError, OSError) as err:
            failure.error = err if isinstance(err, ClipSpotError) else ClipSpotError(str(err))
            return  # half-close: the server answers what it got, then the error is raised
        if request is None:
            return
        getattr(request, request.WhichOneof("message")).seq = seq
        seq += 1
        yield request
