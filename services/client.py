"""Typed Python client for the TextSpotting service (embedded or on Ray Serve).

    with SpotClient("localhost:50051") as client:
        for item in client.stream_video("clip.mp4", StreamOptions(detect_every=2)):
            if isinstance(item, FrameResult): ...      # one per frame, in order
            else: ...                                  # TrackEvent: started / updated / ended
        words = client.spot_image(Path("photo.jpg").read_bytes())

A video file is remuxed to MPEG-TS without re-encoding (a plain MP4 keeps its index at the end,
so it cannot be decoded as it arrives) and sent in chunks; a folder of images is sent one
encoded image per message. The sender holds no more messages in flight than the server has
granted credits for, so a slow server slows the client instead of piling frames up in buffers.
Server errors surface as ClipSpotError with the server's message (INVALID_ARGUMENT: bad input).
A server that needs them gets TLS (`tls=ClientTls(ca=...)`, services/tls.py) and a bearer token
(`token=...`, sent as `authorization` metadata on every call, resumed ones included).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from pipeline.decode import remux_to_mpegts
from pipeline.errors import ClipSpotError
from pipeline.types import FrameResult, TextInstance, TrackEvent
from services.auth import bearer_metadata
from services.grpc_edge import (
    DROP_POLICY_TO_PROTO,
    frame_result_from_proto,
    instance_from_proto,
    track_event_from_proto,
)
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.rpc.clipspot.v1 import spotting_pb2_grpc as pb_grpc
from services.stream_types import DropPolicy
from services.tls import ClientTls

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Find a server whose network went silent within ~40 s instead of gRPC's 2 hours. 30 s is
    # above the 10 s our server accepts (embedded_server.MIN_CLIENT_PING_MS); pings only while a
    # call is open, so an idle channel never annoys a server with stricter (default) rules.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.ping_timeout_ms", 10_000),  # gRPC >= 1.59 waits this long for the answer
    ("grpc.keepalive_permit_without_calls", 0),
]


@dataclass(frozen=True)
class StreamOptions:
    """The client's side of a StreamConfig (input kind and shape come from the input)."""

    stream_id: str = ""
    prompt: str | None = None
    detect_every: int = 0  # 0: the server's default (adaptive keyframes); 1: every frame
    fixed_keyframes: bool = False
    max_fps: float = 0.0
    drop_policy: DropPolicy = "none"
    max_queue: int = 0  # 0: the server's default
    chunk_bytes: int = 64 * 1024
    retry_s: float = 60.0  # keep resuming this long after a cut (outlasts a model reload)


class _Credits:
    """Counts the messages the server allows; the request thread waits on it."""

    def __init__(self) -> None:
        self._available = 0
        self._closed = False
        self._cond = threading.Condition()

    def grant(self, count: int) -> None:
        with self._cond:
            self._available += count
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self) -> bool:
        """Wait for one credit; False once the call is over (stop sending)."""
        with self._cond:
            self._cond.wait_for(lambda: self._available > 0 or self._closed)
            if self._closed:
                return False
            self._available -= 1
            return True


class SpotClient:
    """A channel to one server; safe to use from several threads (one stream per call)."""

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
            self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.secure_channel(target, tls.credentials(), options=CHANNEL_OPTIONS)
        self._metadata = bearer_metadata(token)
        self._stub = pb_grpc.TextSpottingStub(self._channel)
        self.resumed_at: list[int] = []  # frames answered when the last stream resumed

    def __enter__(self) -> SpotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise ClipSpotError(f"{self.target}: no ClipSpot server answered within "
                                f"{timeout_s:.0f} s") from None

    def spot_image(self, image: bytes, prompt: str | None = None) -> list[TextInstance]:
        """One encoded image (JPEG/PNG bytes) -> its words."""
        request = pb.SpotImageRequest(image=image, prompt=prompt or "")
        try:
            response = self._stub.SpotImage(request, timeout=self.timeout_s,
                                            metadata=self._metadata)
        except grpc.RpcError as err:
            raise rpc_error_as_clipspot(self.target, err) from None
        return [instance_from_proto(i) for i in response.instances]

    def stream_video(
        self, path: str | Path, options: StreamOptions | None = None
    ) -> Iterator[FrameResult | TrackEvent]:
        """Remux a video file to MPEG-TS (no re-encoding) and stream it; after a cut the file
        is sent again from its first byte with the answered frames skipped (see the .proto)."""
        options = options or StreamOptions()
        config = stream_config(options, pb.INPUT_KIND_MPEGTS, str(path))

        def payloads(answered: int) -> tuple[pb.StreamConfig, Iterable[pb.StreamRequest]]:
            chunks = remux_to_mpegts(path, chunk_size=options.chunk_bytes)
            resumed = _copy(config, skip_frames=answered)
            return resumed, (pb.StreamRequest(chunk=pb.Chunk(data=c)) for c in chunks)

        yield from self.resumable(payloads, lambda _frame: str(path), options.retry_s)

    def stream_images(
        self, paths: Iterable[str | Path], options: StreamOptions | None = None
    ) -> Iterator[FrameResult | TrackEvent]:
        """Stream encoded images as consecutive frames (pts absent); each result's source is
        its image's path. After a cut, sending resumes at the first unanswered image."""
        paths = [Path(p) for p in paths]
        frames = ((str(p), _read(p), None) for p in paths)
        yield from self.stream_frames(frames, options, str(paths[0].parent) if paths else "")

    def stream_frames(
        self,
        frames: Iterable[SentFrame],
        options: StreamOptions | None = None,
        default_id: str = "",
    ) -> Iterator[FrameResult | TrackEvent]:
        """Stream (source name, encoded image bytes, pts or None) as consecutive frames, read
        lazily (a live camera is read only when the server grants a credit); each result keeps
        its frame's name and pts. After a cut, the frames not yet answered are sent again
        (they are kept until answered, at most `_Replay.LIMIT` of them)."""
        options = options or StreamOptions()
        config = stream_config(options, pb.INPUT_KIND_IMAGES, default_id)
        replay = _Replay(frames)

        def payloads(answered: int) -> tuple[pb.StreamConfig, Iterable[pb.StreamRequest]]:
            start = max(answered, replay.first)  # frames past the limit are lost in a cut
            resumed = _copy(config, resume_from=start, first_frame=start)
            rest = (pb.StreamRequest(frame=_frame_message(data, pts))
                    for _, data, pts in replay.since(start))
            return resumed, rest

        yield from self.resumable(payloads, replay.answered, options.retry_s)

    def resumable(
        self,
        payloads: Callable[[int], tuple[pb.StreamConfig, Iterable[pb.StreamRequest]]],
        source_of: Callable[[int], str],
        retry_s: float = 60.0,
    ) -> Iterator[FrameResult | TrackEvent]:
        """A stream that survives cuts: `payloads(answered)` gives the config and messages to
        send when frames 0..answered-1 are answered. On UNAVAILABLE (server restart, drain,
        network drop) it reconnects with backoff for up to `retry_s` seconds since the last
        progress; frames come exactly once, in order. Tracks open at a cut are ended here
        with what was last seen, and the resumed stream's track ids start above them."""
        answered, tracks = 0, _OpenTracks()
        deadline = time.monotonic() + retry_s
        self.resumed_at = []
        for attempt in itertools.count():
            config, messages = payloads(answered)
            if attempt:
                self.resumed_at.append(answered)
                config = _copy(config, first_track_id=tracks.next_id)
            try:
                for item in self.stream(config, messages, source_of):
                    if isinstance(item, FrameResult):
                        answered = item.frame + 1
                        deadline = time.monotonic() + retry_s
                    tracks.see(item)
                    yield item
                return
            except ResumableError as err:
                if time.monotonic() > deadline:
                    raise ClipSpotError(f"{err} (gave up resuming after {retry_s:.0f} s)") from None
                yield from tracks.end_all()
                time.sleep(min(5.0, 0.25 * 2 ** min(attempt, 5)))

    def stream(
        self,
        config: pb.StreamConfig,
        payloads: Iterable[pb.StreamRequest],
        source_of: Callable[[int], str] | None = None,
    ) -> Iterator[FrameResult | TrackEvent]:
        """The general form: a config, then Chunk/Frame requests (seq filled in here).

        `source_of(frame_index) -> str` names each result's source (default: the stream id).
        """
        name = source_of or (lambda _frame: config.stream_id)
        for response in self.stream_responses(config, payloads):
            if response.WhichOneof("message") == "result":
                yield frame_result_from_proto(response.result, name(response.result.frame))
            else:
                yield track_event_from_proto(response.track)

    def stream_responses(
        self, config: pb.StreamConfig, payloads: Iterable[pb.StreamRequest]
    ) -> Iterator[pb.StreamResponse]:
        """The protobuf level: result and track responses as they come (each result keeps its
        `seq`); credit responses are consumed here to pace the sender."""
        credits = _Credits()
        sender = _Sender(config, payloads, credits)
        call = self._stub.StreamSpot(iter(sender), timeout=self.timeout_s,
                                     metadata=self._metadata)
        try:
            for response in call:
                if response.WhichOneof("message") == "credits":
                    credits.grant(response.credits.grant)
                else:
                    yield response
        except grpc.RpcError as err:
            if sender.error is not None:
                raise sender.error from None
            if _is_cut(err):
                raise ResumableError(str(rpc_error_as_clipspot(self.target, err))) from None
            raise rpc_error_as_clipspot(self.target, err) from None
        finally:
            credits.close()
            call.cancel()
        if sender.error is not None:
            raise sender.error


class _Sender:
    """The request side, run by gRPC's thread: the config, then one message per credit.

    An error while producing payloads (an unreadable image, a file that cannot be remuxed)
    is kept for the caller's thread, where it is raised; gRPC would otherwise swallow it.
    """

    def __init__(
        self, config: pb.StreamConfig, payloads: Iterable[pb.StreamRequest], credits: _Credits
    ) -> None:
        self.config = config
        self.payloads = payloads
        self.credits = credits
        self.error: ClipSpotError | None = None

    def __iter__(self) -> Iterator[pb.StreamRequest]:
        yield pb.StreamRequest(config=self.config)
        seq = self.config.resume_from
        payloads = iter(self.payloads)
        # Credit first, then the payload: a live source is read only when it can be sent.
        while self.credits.take():
            try:
                request = next(payloads, None)
            except ClipSpotError as err:
                self.error = err
                return  # half-close: the server answers what it got, then the error is raised
            if request is None:
                return
            getattr(request, request.WhichOneof("message")).seq = seq
            seq += 1
            yield request


def stream_config(options: StreamOptions, kind: int, default_id: str) -> pb.StreamConfig:
    return pb.StreamConfig(
        stream_id=options.stream_id or default_id,
        input_kind=kind,
        prompt=options.prompt or "",
        sampling=pb.Sampling(detect_every=options.detect_every, max_fps=options.max_fps,
                             fixed_keyframes=options.fixed_keyframes),
        drop_policy=DROP_POLICY_TO_PROTO[options.drop_policy],
        max_queue=options.max_queue,
    )


class ResumableError(ClipSpotError):
    """The call was cut (server gone, draining, network drop, Ray ingress replica lost)."""


def _is_cut(err: grpc.RpcError) -> bool:
    """UNAVAILABLE: the server is draining or unreachable. Serve 2.60's gRPC proxy ends a
    call whose ingress replica died with INTERNAL "The actor died unexpectedly ..."."""
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        return True
    details = (err.details() or "").lower()
    return err.code() == grpc.StatusCode.INTERNAL and "actor died" in details


class _OpenTracks:
    """Tracks started and not ended, so a cut can end them and a resume can number above."""

    def __init__(self) -> None:
        self.open: dict[int, TrackEvent] = {}
        self.last_pts: dict[int, float | None] = {}
        self.next_id = 1

    def see(self, item: FrameResult | TrackEvent) -> None:
        if isinstance(item, FrameResult):  # a frame's words come before their tracks' events
            for instance in item.instances:
                if instance.track_id is not None:
                    self.next_id = max(self.next_id, instance.track_id + 1)
                    self.last_pts[instance.track_id] = item.pts
            return
        self.next_id = max(self.next_id, item.track_id + 1)
        if item.kind == "ended":
            self.open.pop(item.track_id, None)
        else:
            self.open[item.track_id] = item

    def end_all(self) -> Iterator[TrackEvent]:
        """The `ended` event of every open track, from what the client last saw of it."""
        for track_id, last in sorted(self.open.items()):
            last_pts = self.last_pts.get(track_id, last.last_pts)
            yield dataclasses.replace(last, kind="ended", last_pts=last_pts)
        self.open.clear()


SentFrame = tuple[str, bytes, float | None]  # (source name, encoded image, pts in seconds)


class _Replay:
    """The frames of a one-pass source (a camera) sent but not yet answered, so a resumed stream
    can send them again. The gRPC sender thread pulls new frames; the caller's thread drops them
    once answered. Unanswered frames are few (credits bound them); LIMIT is a safety cap."""

    LIMIT = 512

    def __init__(self, frames: Iterable[SentFrame]) -> None:
        self._source = iter(frames)
        self._kept: collections.deque[SentFrame] = collections.deque()
        self.first = 0  # frame index of _kept[0]
        self._lock = threading.Lock()  # guards _kept and first (short holds)
        self._pull = threading.Lock()  # one puller at a time: an old call's sender may linger

    def since(self, start: int) -> Iterator[SentFrame]:
        """Frames from index `start`: the kept ones, then new ones from the source."""
        index = start
        while (frame := self._get(index)) is not None:
            yield frame
            index += 1

    def answered(self, index: int) -> str:
        """Frame `index` was answered: forget the frames before it; its source name."""
        with self._lock:
            while self._kept and self.first < index:
                self._kept.popleft()
                self.first += 1
            return self._kept[0][0] if self._kept and self.first == index else ""

    def _get(self, index: int) -> SentFrame | None:
        with self._pull:
            with self._lock:
                if index < self.first + len(self._kept):
                    return self._kept[max(0, index - self.first)]
            frame = next(self._source, None)  # may block on the camera: outside _lock
            if frame is None:
                return None
            with self._lock:
                self._kept.append(frame)
                if len(self._kept) > self.LIMIT:
                    self._kept.popleft()
                    self.first += 1
            return frame


def _frame_message(data: bytes, pts: float | None) -> pb.Frame:
    frame = pb.Frame(data=data)
    if pts is not None:
        frame.pts = pts
    return frame


def _copy(config: pb.StreamConfig, **fields: int) -> pb.StreamConfig:
    copy = pb.StreamConfig()
    copy.CopyFrom(config)
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ClipSpotError(f"{path}: cannot read image ({err.strerror})") from None


def rpc_error_as_clipspot(target: str, err: grpc.RpcError) -> ClipSpotError:
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    name = code.name if code is not None else "ERROR"
    return ClipSpotError(f"{target}: {name}: {details}")
