"""The bad-input matrix: one case per kind of bad input, each sent to one real embedded server
while one good stream stays open (paused mid-video) alongside; the good stream's results must
equal an undisturbed run of the same video, and the server's memory must stay bounded.

Every case asserts the status the stream ends with, the message (the stream, the seq and the
problem where there is one) and that the process's RSS (the server runs in this process) is
within RSS_BOUND of what it was after the warm-up. docs/reliability.md tabulates the outcomes.
Real server on loopback, real Spotter, real video through PyAV.
"""

from __future__ import annotations

import asyncio
import gc
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from grpc_harness import (
    MAX_SIDE,
    BackgroundServer,
    chunk_request,
    config_request,
    frame_request,
    make_video,
)

from pipeline.decode import remux_to_mpegts
from pipeline.jsonl import frame_result_to_dict, track_event_to_dict
from pipeline.spotter import Spotter
from pipeline.types import FrameResult, TrackEvent
from services.client import SpotClient
from services.rpc.clipspot.v1 import spotting_pb2 as pb

RSS_BOUND = 100 * 1024 * 1024  # growth over the whole matrix, measured after the warm-up
STREAM_SPOT = "/clipspot.v1.TextSpotting/StreamSpot"
MAX_MESSAGE = 64 * 1024 * 1024  # ServerConfig.max_message_bytes
GOOD_ID = "good"


def rss_bytes() -> int:
    """VmRSS of this process (the embedded server runs in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# ---------------------------------------------------------------- inputs the cases are made of


@dataclass(frozen=True)
class Inputs:
    chunks: list[bytes]  # the test video as MPEG-TS, 40 packets a chunk
    jpegs: list[bytes]  # its first frames as JPEG files

    @property
    def ts(self) -> bytes:
        return b"".join(self.chunks)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, rows: int | None = None) -> bytes:
    """A grey PNG of `width`x`height` whose pixel data holds `rows` zero rows (all by default:
    a complete, valid PNG; 20000x20000 is 400 KB that decodes to 1.2 GB, 2.4 GB as RGB)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = bytes(1 + width)
    idat = b"".join(packer.compress(row) for _ in range(height if rows is None else rows))
    idat += packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A JPEG frame header (SOF0, 3 components) declaring a size, and no image data."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0])
    return b"\xff\xd8\xff\xc0" + struct.pack(">H", 2 + len(sof)) + sof + b"\xff\xd9"


def encoded(image: np.ndarray, suffix: str = ".png") -> bytes:
    ok, buf = cv2.imencode(suffix, image)
    assert ok
    return buf.tobytes()


def _mpeg_crc32(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def with_video_stream_type(ts: bytes, stream_type: int) -> bytes:
    """The MPEG-TS with its PMT's first stream type replaced (CRC fixed): 0xD2 says AVS2, a
    video codec FFmpeg demuxes but this PyAV build has no decoder for."""
    out = bytearray(ts)
    pmt_pid = None
    for at in range(0, len(out), 188):
        packet = out[at:at + 188]
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        if not packet[1] & 0x40:  # not the start of a section
            continue
        table = 5 + packet[4]  # after the header and the pointer field
        if pid == 0:  # PAT: the first program's PMT pid
            pmt_pid = ((packet[table + 10] & 0x1F) << 8) | packet[table + 11]
        elif pid == pmt_pid:
            length = ((packet[table + 1] & 0x0F) << 8) | packet[table + 2]
            info = ((packet[table + 10] & 0x0F) << 8) | packet[table + 11]
            out[at + table + 12 + info] = stream_type
            end = table + 3 + length
            crc = _mpeg_crc32(bytes(out[at + table:at + end - 4]))
            out[at + end - 4:at + end] = crc.to_bytes(4, "big")
    return bytes(out)


def invalid_utf8_prompt_config(stream_id: str) -> bytes:
    """A serialized config request whose prompt is not UTF-8 (protobuf's Python API would not
    build one: the bytes are patched in after serializing)."""
    request = config_request(pb.INPUT_KIND_MPEGTS, stream_id, prompt="@@@@")
    data = request.SerializeToString()
    assert data.count(b"@@@@") == 1
    return data.replace(b"@@@@", b"\xff\xfe\xc3\x28")


# ---------------------------------------------------------------- the cases

Requests = list[pb.StreamRequest | bytes]


@dataclass(frozen=True)
class Case:
    """A stream of requests and how the server must end it.

    says: fragments the status message must contain (the stream, seq and problem). paced: sent
    through SpotClient, which waits for credits (for OK cases longer than the initial credits).
    answered: for OK cases, checks the FrameResults the stream got.
    """

    name: str
    requests: Callable[[Inputs], Requests]
    code: grpc.StatusCode
    says: tuple[str, ...] = ()
    paced: bool = False
    answered: Callable[[Inputs, list[FrameResult]], None] | None = None


INVALID, EXHAUSTED, OK = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                          grpc.StatusCode.OK)
TS, FMP4, IMAGES, RAW = (pb.INPUT_KIND_MPEGTS, pb.INPUT_KIND_FMP4, pb.INPUT_KIND_IMAGES,
                         pb.INPUT_KIND_RAW_RGB)
PTS_BACKWARDS = [5.0, 4.0, 3.0, 1.0, 2.0, 0.0]
PTS_1000FPS = [0.001 * i for i in range(6)]


def _no_frames(_inputs: Inputs, results: list[FrameResult]) -> None:
    assert results == []


def _every_frame(inputs: Inputs, results: list[FrameResult]) -> None:
    assert [r.frame for r in results] == list(range(len(inputs.jpegs)))


def _whole_video(_inputs: Inputs, results: list[FrameResult]) -> None:
    assert [r.frame for r in results] == list(range(24))  # VIDEO: 2.4 s at 10 fps


def _some_frames(_inputs: Inputs, results: list[FrameResult]) -> None:
    assert results and [r.frame for r in results] == list(range(len(results)))


def _pts_as_given(pts: list[float]) -> Callable[[Inputs, list[FrameResult]], None]:
    def check(_inputs: Inputs, results: list[FrameResult]) -> None:
        assert [r.frame for r in results] == list(range(len(pts)))  # in arrival order
        assert [r.pts for r in results] == pts  # as the client gave them
    return check


def _one_image(_inputs: Inputs, results: list[FrameResult]) -> None:
    assert [(r.frame, r.instances) for r in results] == [(0, ())]


def _ts(stream_id: str, *chunks: bytes, **config: object) -> Requests:
    return [config_request(TS, stream_id, **config),
            *(chunk_request(seq, chunk) for seq, chunk in enumerate(chunks))]


def _frames(stream_id: str, kind: int, *frames: bytes, **config: object) -> Requests:
    return [config_request(kind, stream_id, **config),
            *(frame_request(seq, frame) for seq, frame in enumerate(frames))]


def _cut_mid_packet(i: Inputs) -> Requests:
    return _ts("cut", i.chunks[0][:1000], i.chunks[1])


CASES = [
    # -- byte streams (MPEG-TS, fragmented MP4)
    Case("corrupt chunk",
         lambda i: _ts("corrupt", i.ts[:188 * 40], b"\x47" + bytes(range(255)) * 2),
         INVALID, ("stream 'corrupt' seq 1: corrupt MPEG-TS at byte 7708: expected sync byte "
                   "0x47, got 0xbb",)),
    Case("chunk of non-video bytes", lambda i: _ts("text", b"hello, this is not video"),
         INVALID, ("stream 'text' seq 0: corrupt MPEG-TS at byte 0: expected sync byte 0x47, "
                   "got 0x68",)),
    Case("chunk truncated mid-packet, stream goes on", _cut_mid_packet, INVALID,
         ("stream 'cut' seq 1: corrupt MPEG-TS at byte 1128: expected sync byte 0x47",)),
    Case("stream truncated before the first frame",
         lambda i: _ts("short", i.chunks[0][:188 * 3]), INVALID,
         ("stream 'short' at end of stream (after seq 0): no decodable video in 564 bytes",)),
    Case("stream truncated mid-video (half-close)", lambda i: _ts("half", *i.chunks[:6]), OK,
         answered=_some_frames),
    Case("empty chunk among good ones",
         lambda i: _ts("gaps", i.chunks[0], b"", *i.chunks[1:]), OK, paced=True,
         answered=_whole_video),
    Case("only empty chunks", lambda i: _ts("blank", b"", b""), OK, answered=_no_frames),
    Case("codec with no decoder (AVS2 in a valid MPEG-TS)",
         lambda i: _ts("avs2", with_video_stream_type(i.ts, 0xD2)), INVALID,
         ("stream 'avs2' at end of stream (after seq 0): the mpegts stream's video codec "
          "cannot be decoded here (no decoder for it; send H.264 or HEVC)",)),
    Case("FMP4 stream of non-MP4 bytes",
         lambda i: [config_request(FMP4, "mp4"), chunk_request(0, i.chunks[0])], INVALID,
         ("stream 'mp4' seq 0: not a fragmented MP4: first box type is",)),
    # -- frames (IMAGES, RAW_RGB)
    Case("non-image bytes as a frame", lambda i: _frames("text-frame", IMAGES, b"plain text"),
         INVALID, ("stream 'text-frame' seq 0: undecodable images frame: frame: not a readable "
                   "image (10 bytes",)),
    Case("empty frame", lambda i: _frames("empty-frame", IMAGES, i.jpegs[0], b""), INVALID,
         ("stream 'empty-frame' seq 1: empty frame",)),
    Case("truncated JPEG header", lambda i: _frames("cut-jpeg", IMAGES, i.jpegs[0][:300]),
         INVALID, ("stream 'cut-jpeg' seq 0: undecodable images frame: frame: not a readable",)),
    Case("PNG of 0x0", lambda i: _frames("zero", IMAGES, png_declaring(0, 0)), INVALID,
         ("stream 'zero' seq 0: undecodable images frame: frame: not a readable image",)),
    Case("PNG of 1x1", lambda i: _frames("one", IMAGES, encoded(np.zeros((1, 1, 3), np.uint8))),
         OK, answered=_one_image),
    Case("PNG header declaring 20000x20000",
         lambda i: _frames("huge", IMAGES, png_declaring(20000, 20000, rows=2)), INVALID,
         ("stream 'huge' seq 0: undecodable images frame: frame: image declares 20000x20000 "
          "pixels, above the limit of 67108864 pixels",)),
    Case("PNG decompression bomb (400 KB, 20000x20000)",
         lambda i: _frames("bomb", IMAGES, i.jpegs[0], png_declaring(20000, 20000)), INVALID,
         ("stream 'bomb' seq 1: undecodable images frame: frame: image declares 20000x20000 "
          "pixels",)),
    Case("JPEG header declaring 65535x65535",
         lambda i: _frames("huge-jpeg", IMAGES, jpeg_declaring(65535, 65535)), INVALID,
         ("stream 'huge-jpeg' seq 0: undecodable images frame: frame: image declares "
          "65535x65535 pixels",)),
    Case("raw frame whose bytes do not match its shape",
         lambda i: _frames("raw", RAW, bytes(24), bytes(5), raw_shape=pb.RawShape(width=4,
                                                                                  height=2)),
         INVALID, ("stream 'raw' seq 1: undecodable raw frame: frame: raw frame of shape "
                   "(2, 4, 3) needs 24 bytes, got 5",)),
    Case("raw shape 0x0", lambda i: _frames("raw0", RAW, b""), INVALID,
         ("stream 'raw0': config: RAW_RGB needs raw_shape width and height in 1..8192, got 0x0",)),
    Case("raw shape 100000x100000",
         lambda i: _frames("raw-huge", RAW, raw_shape=pb.RawShape(width=100000, height=100000)),
         INVALID, ("stream 'raw-huge': config: RAW_RGB needs raw_shape width and height in "
                   "1..8192, got 100000x100000",)),
    Case("message over 64 MiB", lambda i: _frames("oversize", RAW, bytes(MAX_MESSAGE + 3),
                                                  raw_shape=pb.RawShape(width=8192,
                                                                        height=8192)),
         EXHAUSTED, ("Received message larger than max",)),
    Case("frame message on a chunk stream", lambda i: [config_request(TS, "mixed"),
                                                       frame_request(0, i.jpegs[0])],
         INVALID, ("stream 'mixed': expected a chunk message for input kind mpegts, got a "
                   "frame message",)),
    Case("pts going backwards (IMAGES)",
         lambda i: [config_request(IMAGES, "back"), *(frame_request(seq, i.jpegs[seq], pts)
                                                      for seq, pts in enumerate(PTS_BACKWARDS))],
         OK, answered=_pts_as_given(PTS_BACKWARDS)),
    Case("pts at 1000 frames/s (IMAGES)",
         lambda i: [config_request(IMAGES, "fast"), *(frame_request(seq, i.jpegs[seq], pts)
                                                      for seq, pts in enumerate(PTS_1000FPS))],
         OK, answered=_pts_as_given(PTS_1000FPS)),
    # -- config
    Case("config missing", lambda i: [chunk_request(0, i.chunks[0])], INVALID,
         ("stream: config missing: the first message must be a StreamConfig, got a chunk "
          "message",)),
    Case("empty message first", lambda i: [pb.StreamRequest()], INVALID,
         ("stream: config missing: the first message must be a StreamConfig, got an empty "
          "message",)),
    Case("config repeated at once", lambda i: [config_request(TS, "twice"),
                                               config_request(TS, "twice")], INVALID,
         ("stream 'twice': a second StreamConfig before any chunk; send one config per "
          "stream",)),
    Case("config after chunks", lambda i: [*_ts("late", *i.chunks[:2]),
                                           config_request(TS, "late")], INVALID,
         ("stream 'late': a second StreamConfig after seq 1",)),
    Case("empty message after the config", lambda i: [config_request(TS, "hollow"),
                                                      pb.StreamRequest()], INVALID,
         ("stream 'hollow': expected a chunk message for input kind mpegts, got an empty "
          "message",)),
    Case("unknown input_kind 99", lambda i: [config_request(99, "kind99")], INVALID,
         ("stream 'kind99': config: input_kind is unspecified or unknown (99)",)),
    Case("input_kind unspecified", lambda i: [config_request(0, "kind0")], INVALID,
         ("stream 'kind0': config: input_kind is unspecified or unknown (0)",)),
    Case("unknown drop_policy 99", lambda i: [config_request(TS, "drop99", drop_policy=99)],
         INVALID, ("stream 'drop99': config: unknown drop_policy 99",)),
    Case("max_queue over the limit", lambda i: [config_request(TS, "queue", max_queue=10**6)],
         INVALID, ("stream 'queue': config: max_queue 1000000 is above this server's limit "
                   "of 64",)),
    Case("max_fps NaN", lambda i: [config_request(TS, "nan", sampling=pb.Sampling(
        max_fps=float("nan")))], INVALID, ("stream 'nan': config: sampling.max_fps must be "
                                           ">= 0, got nan",)),
    Case("prompt over 1000 characters", lambda i: [config_request(TS, "long", prompt="a" * 1001)],
         INVALID, ("stream 'long': config: prompt is 1001 characters, the limit is 1000",)),
    Case("blank prompt", lambda i: _ts("blank-prompt", i.chunks[0], prompt="   "), INVALID,
         ("stream 'blank-prompt': config: prompt: the text prompt is empty",)),
    Case("non-UTF-8 prompt", lambda i: [invalid_utf8_prompt_config("utf8")], INVALID,
         ("stream: message 1 cannot be parsed", "String field had bad UTF-8")),
    Case("empty stream (config, then half-close)", lambda i: _ts("nothing"), OK,
         answered=_no_frames),
    # -- sequence numbers
    Case("sequence gap", lambda i: [*_ts("gap", i.chunks[0]), chunk_request(2, i.chunks[1])],
         INVALID, ("stream 'gap': sequence gap: expected seq 1, got seq 2",)),
    Case("sequence duplicated",
         lambda i: [*_ts("dup", i.chunks[0]), chunk_request(0, i.chunks[1])],
         INVALID, ("stream 'dup': sequence duplicate: expected seq 1, got seq 0",)),
    Case("sequence out of order", lambda i: [config_request(IMAGES, "order"),
                                             frame_request(0, i.jpegs[0]),
                                             frame_request(2, i.jpegs[2]),
                                             frame_request(1, i.jpegs[1])],
         INVALID, ("stream 'order': sequence gap: expected seq 1, got seq 2",)),
    Case("first seq below resume_from", lambda i: _ts("resume", i.chunks[0], resume_from=5),
         INVALID, ("stream 'resume': sequence duplicate: expected seq 5, got seq 0",)),
    # -- credits
    Case("messages without a credit",
         lambda i: _frames("flood", IMAGES, *(i.jpegs[0] for _ in range(40)), max_queue=1),
         EXHAUSTED, ("stream 'flood' seq ", "sent without a credit")),
]


# ---------------------------------------------------------------- sending


def _send_raw(target: str, requests: Requests) -> tuple[grpc.StatusCode, str, list]:
    """Send requests as they are (no credit pacing, no client checks; bytes go out verbatim)."""
    def serialize(request: pb.StreamRequest | bytes) -> bytes:
        return request if isinstance(request, bytes) else request.SerializeToString()

    with grpc.insecure_channel(target) as channel:
        call = channel.stream_stream(STREAM_SPOT, request_serializer=serialize,
                                     response_deserializer=pb.StreamResponse.FromString)
        responses = call(iter(requests), timeout=60)
        got = []
        try:
            got.extend(responses)
        except grpc.RpcError as err:
            return err.code(), err.details() or "", got
    return grpc.StatusCode.OK, "", got


def _results(responses: list[pb.StreamResponse], stream_id: str) -> list[FrameResult]:
    from services.grpc_edge import frame_result_from_proto

    return [frame_result_from_proto(r.result, stream_id) for r in responses
            if r.WhichOneof("message") == "result"]


def _send_paced(target: str, requests: Requests) -> tuple[grpc.StatusCode, str, list]:
    config = requests[0].config  # type: ignore[union-attr]
    with SpotClient(target, timeout_s=120) as client:
        responses = list(client.stream_responses(config, requests[1:]))  # type: ignore[arg-type]
    return grpc.StatusCode.OK, "", responses


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def spotter() -> Spotter:
    return Spotter.load(max_side=MAX_SIDE)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    path, _ = make_video(tmp_path_factory.mktemp("matrix"))
    chunks = list(remux_to_mpegts(path, chunk_size=188 * 40))
    jpegs = []
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            jpegs.append(encoded(frame.to_ndarray(format="bgr24"), ".jpg"))
            if len(jpegs) == len(PTS_BACKWARDS):
                break
    return Inputs(chunks=chunks, jpegs=jpegs)


@pytest.fixture(scope="module")
def server(spotter: Spotter) -> Iterator[BackgroundServer]:
    with BackgroundServer(spotter) as running:
        yield running


def _items(target: str, chunks: Iterator[bytes], into: list) -> None:
    config = pb.StreamConfig(stream_id=GOOD_ID, input_kind=TS)
    with SpotClient(target) as client:
        for item in client.stream(config, (chunk_request(0, c) for c in chunks)):
            into.append(item)


def _as_dicts(items: list) -> tuple[list, list]:
    results = [frame_result_to_dict(i) for i in items if isinstance(i, FrameResult)]
    events = [track_event_to_dict(i) for i in items if isinstance(i, TrackEvent)]
    return results, events


@dataclass
class GoodStream:
    thread: threading.Thread
    release: threading.Event
    items: list
    undisturbed: list
    rss_after_warmup: int


@pytest.fixture(scope="module")
def good(server: BackgroundServer, inputs: Inputs) -> Iterator[GoodStream]:
    """The warm-up (an undisturbed run of the video), then the same video as a stream paused
    after two chunks, open while the cases run."""
    undisturbed: list = []
    _items(server.target, iter(inputs.chunks), undisturbed)
    release, items = threading.Event(), []

    def paused() -> Iterator[bytes]:
        for index, chunk in enumerate(inputs.chunks):
            if index == 2:
                release.wait(300)
            yield chunk

    thread = threading.Thread(target=_items, args=(server.target, paused(), items))
    thread.start()
    assert server.server is not None
    deadline = time.monotonic() + 30
    while server.server.service.open_streams < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.server.service.open_streams == 1
    gc.collect()
    state = GoodStream(thread, release, items, undisturbed, rss_bytes())
    yield state
    release.set()
    thread.join(120)


def _name(case: Case | object) -> str:
    return case.name if isinstance(case, Case) else case.values[0].name  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", CASES, ids=[_name(c) for c in CASES])
def test_bad_input(case: Case, server: BackgroundServer, good: GoodStream,
                   inputs: Inputs) -> None:
    requests = case.requests(inputs)
    send = _send_paced if case.paced else _send_raw
    code, message, responses = send(server.target, requests)
    assert code == case.code, message
    for fragment in case.says:
        assert fragment in message
    if case.answered is not None:
        first = requests[0]
        stream_id = first.config.stream_id if isinstance(first, pb.StreamRequest) else ""
        case.answered(inputs, _results(responses, stream_id))
    assert good.thread.is_alive()  # the good stream is still open, paused
    del requests, responses
    gc.collect()
    growth = rss_bytes() - good.rss_after_warmup
    assert growth < RSS_BOUND, f"RSS grew by {growth / 2**20:.0f} MiB"


def test_good_stream_is_undisturbed(server: BackgroundServer, good: GoodStream) -> None:
    """After the matrix the paused stream resumes and ends exactly like the undisturbed run."""
    assert good.thread.is_alive()
    good.release.set()
    good.thread.join(120)
    assert not good.thread.is_alive()
    assert _as_dicts(good.items) == _as_dicts(good.undisturbed)
    assert len(_as_dicts(good.items)[0]) == 24
    gc.collect()
    growth = rss_bytes() - good.rss_after_warmup
    print(f"RSS growth over the matrix: {growth / 2**20:.1f} MiB (bound "
          f"{RSS_BOUND / 2**20:.0f} MiB)")
    assert growth < RSS_BOUND


def test_an_unparsable_message_is_a_stream_error() -> None:
    """What the non-UTF-8 case needs on the server: gRPC parses each request as the servicer
    reads it, and `parsed_requests` turns protobuf's DecodeError into a StreamError."""
    from services.grpc_edge import parsed_requests
    from services.stream_types import StreamError

    async def wire(messages: list[bytes]):  # what grpc.aio does with each message it reads
        for data in messages:
            yield pb.StreamRequest.FromString(data)

    async def read_all(messages: list[bytes]) -> list[pb.StreamRequest]:
        return [request async for request in parsed_requests(wire(messages))]

    good = config_request(TS, "utf8").SerializeToString()
    assert len(asyncio.run(read_all([good, good]))) == 2
    with pytest.raises(StreamError, match=r"^stream: message 1 cannot be parsed: .*UTF-8"):
        asyncio.run(read_all([invalid_utf8_prompt_config("x")]))
    with pytest.raises(StreamError, match=r"^stream 'utf8': message 2 cannot be parsed"):
        asyncio.run(read_all([good, invalid_utf8_prompt_config("x")]))
