"""Bounded-time fuzzing of what a client controls: the StreamConfig, the bytes of a video stream
and the bytes of an image. Derandomized with small fixed budgets, so CI runs the same examples
every time in well under a minute. A crash found here becomes a case of
tests/test_bad_input_matrix.py once fixed.

(a) `settings_from_proto` on arbitrary field values raises nothing but StreamError;
(b) the push decoder behind a stream (`FrameSource` over `StreamDecoder`), fed mutated real
    MPEG-TS and fragmented-MP4 bytes, raises only StreamError and never hangs;
(c) `decode_image_bytes` on mutated JPEG/PNG bytes raises only ClipSpotError.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import cv2
import numpy as np
import pytest
from grpc_harness import VIDEO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.data.synth_video import write_video
from pipeline.decode import decode_image_bytes, remux_streamable
from pipeline.errors import ClipSpotError
from services.frame_source import FrameSource
from services.grpc_edge import settings_from_proto
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.stream_types import Payload, SessionLimits, StreamError, StreamSettings

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DECODE_TIMEOUT_S = 20.0  # one mutated clip (10 frames of 320x192) decodes in ~50 ms

UINT32 = st.integers(0, 2**32 - 1)
UINT64 = st.integers(0, 2**64 - 1)
ENUM = st.one_of(st.integers(-5, 6), st.integers(-(2**31), 2**31 - 1))


# ---------------------------------------------------------------- (a) config validation


@st.composite
def stream_requests(draw: st.DrawFn) -> pb.StreamRequest:
    which = draw(st.sampled_from(["config"] * 8 + ["chunk", "frame", "empty"]))
    if which == "chunk":
        return pb.StreamRequest(chunk=pb.Chunk(seq=draw(UINT64), data=draw(st.binary())))
    if which == "frame":
        return pb.StreamRequest(frame=pb.Frame(seq=draw(UINT64)))
    if which == "empty":
        return pb.StreamRequest()
    config = pb.StreamConfig(
        stream_id=draw(st.text(max_size=40)),
        input_kind=draw(ENUM),
        raw_shape=pb.RawShape(width=draw(UINT32), height=draw(UINT32)),
        prompt=draw(st.one_of(st.text(max_size=30), st.text(min_size=990, max_size=1010))),
        sampling=pb.Sampling(detect_every=draw(UINT32),
                             max_fps=draw(st.floats(allow_nan=True, allow_infinity=True)),
                             fixed_keyframes=draw(st.booleans())),
        drop_policy=draw(ENUM),
        max_queue=draw(UINT32),
        resume_from=draw(UINT64),
        first_frame=draw(UINT64),
        skip_frames=draw(UINT64),
        first_track_id=draw(UINT64),
    )
    return pb.StreamRequest(config=config)


@settings(FUZZ, max_examples=200)
@given(request=stream_requests())
def test_config_validation_raises_only_stream_error(request: pb.StreamRequest) -> None:
    limits = SessionLimits()
    try:
        parsed = settings_from_proto(request, limits)
    except StreamError as err:
        assert str(err).startswith("stream")
        return
    assert isinstance(parsed, StreamSettings)
    assert 1 <= parsed.max_queue <= limits.max_queue
    assert parsed.max_fps >= 0
    if parsed.kind == "raw":
        assert parsed.raw_shape is not None
        assert max(parsed.raw_shape) <= limits.max_raw_side


# ---------------------------------------------------------------- (b) stream decoding


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """One second (10 frames) of the test video as MPEG-TS and as fragmented MP4."""
    path = tmp_path_factory.mktemp("fuzz") / "clip.mp4"
    write_video(replace(VIDEO, seconds=1.0), path)
    return {kind: b"".join(remux_streamable(path, kind)) for kind in ("mpegts", "fmp4")}


BYTE_EDITS = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 64)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
)
# Packet-level edits keep MPEG-TS sync bytes in place, so the bytes get past the sync check to
# the demuxer and the decoder.
PACKET_EDITS = st.one_of(
    st.tuples(st.just("packet_flip"), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("packet_drop"), st.floats(0, 1), st.integers(1, 4)),
    st.tuples(st.just("packet_dup"), st.floats(0, 1), st.integers(1, 3)),
    st.tuples(st.just("packet_truncate"), st.floats(0, 1), st.just(0)),
)


def mutations(packets: bool = False) -> st.SearchStrategy[list[tuple]]:
    """1-4 edits of a byte stream; mostly packet-level ones for MPEG-TS."""
    edits = st.one_of(PACKET_EDITS, PACKET_EDITS, PACKET_EDITS, BYTE_EDITS) if packets \
        else st.one_of(BYTE_EDITS, PACKET_EDITS)
    return st.lists(edits, min_size=1, max_size=4)


def mutate(data: bytes, edits: list[tuple]) -> bytes:
    out = bytearray(data)
    for op, where, arg in edits:
        at = int(where * max(len(out) - 1, 0))
        packet = at - at % 188
        if op == "flip" and out:
            out[at] ^= arg
        elif op == "insert":
            out[at:at] = arg
        elif op == "delete":
            del out[at:at + arg]
        elif op == "truncate":
            del out[at:]
        elif op == "packet_flip":  # overwrite bytes inside one packet, after its sync byte
            start = packet + 1 + (at % 187)
            out[start:start + len(arg)] = arg[:max(0, min(len(arg), packet + 188 - start))]
        elif op == "packet_drop":
            del out[packet:packet + 188 * arg]
        elif op == "packet_dup":
            out[packet:packet] = out[packet:packet + 188] * arg
        elif op == "packet_truncate":
            del out[packet:]
    return bytes(out)


def _decode_stream(kind: str, data: bytes, chunk: int) -> tuple[int, BaseException | None]:
    """Feed `data` through a stream's FrameSource in `chunk`-byte messages, then half-close;
    (frames, the exception raised or None)."""
    input_kind = pb.INPUT_KIND_MPEGTS if kind == "mpegts" else pb.INPUT_KIND_FMP4
    config = pb.StreamRequest(config=pb.StreamConfig(stream_id="fuzz", input_kind=input_kind))
    source = FrameSource(settings_from_proto(config, SessionLimits()))
    frames = 0
    try:
        for seq, at in enumerate(range(0, len(data), chunk)):
            payload = Payload("chunk", seq, data[at:at + chunk])
            source.check(payload)
            frames += len(source.decode(payload))
        frames += len(source.finish())
    except BaseException as err:  # judged by the test
        return frames, err
    finally:
        source.discard()
    return frames, None


@settings(FUZZ, max_examples=150)
@given(case=st.sampled_from(["mpegts", "fmp4"]).flatmap(
    lambda kind: st.tuples(st.just(kind), mutations(packets=kind == "mpegts"))),
       chunk=st.sampled_from([188, 188 * 7, 4096, 188 * 40, 1 << 20]))
def test_mutated_streams_raise_only_stream_error(clips: dict[str, bytes], case: tuple,
                                                 chunk: int) -> None:
    kind, edits = case
    data = mutate(clips[kind], edits)
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(_decode_stream(kind, data, chunk)),
                              daemon=True)
    worker.start()
    worker.join(DECODE_TIMEOUT_S)
    assert not worker.is_alive(), f"decoding hung ({kind}, {len(data)} bytes, edits {edits})"
    frames, error = outcome[0]
    assert error is None or isinstance(error, StreamError), repr(error)
    if error is not None:
        assert str(error).startswith("stream 'fuzz' ")
    assert frames <= 10 + 8 * len(edits)  # dup'd packets may add a frame or two, no more


def test_unmutated_streams_decode_whole(clips: dict[str, bytes]) -> None:
    """The baseline the mutations start from decodes cleanly."""
    for kind, data in clips.items():
        assert _decode_stream(kind, data, 188 * 40) == (10, None)


# ---------------------------------------------------------------- (c) image decoding


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    rng = np.random.default_rng(3)
    picture = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    cv2.putText(picture, "FUZZ", (4, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    return {suffix: cv2.imencode(suffix, picture)[1].tobytes() for suffix in (".jpg", ".png")}


@settings(FUZZ, max_examples=200)
@given(suffix=st.sampled_from([".jpg", ".png"]), edits=mutations())
def test_mutated_images_raise_only_clipspot_error(images: dict[str, bytes], suffix: str,
                                                  edits: list[tuple]) -> None:
    data = mutate(images[suffix], edits)
    try:
        image = decode_image_bytes(data, name="fuzz")
    except ClipSpotError as err:
        assert str(err).startswith("fuzz: ")
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] * image.shape[1] <= 8192 * 8192
