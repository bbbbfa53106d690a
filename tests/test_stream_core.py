"""A stream's pieces without a transport: decoding chunks (and skipping answered frames on a
resume), checking messages on arrival, keyframe settings, drop policies, config validation.
Real video bytes through the real decoder; asyncio only for the queue."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from grpc_harness import chunk_request, config_request, make_video

from pipeline.decode import VideoReader, remux_streamable, remux_to_mpegts
from pipeline.runner import EVERY_FRAME, RunnerConfig, VideoRunner
from pipeline.types import VideoFrame
from services.frame_queue import FrameQueue, QueuedFrame
from services.frame_source import FrameSource
from services.grpc_edge import payload_from_proto, settings_from_proto
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.stream_core import stream_runner_config as runner_config
from services.stream_types import SessionLimits, StreamError, StreamSettings


def parse_config(request: pb.StreamRequest) -> StreamSettings:
    return settings_from_proto(request, SessionLimits())


def _accept(source: FrameSource, request: pb.StreamRequest) -> list[VideoFrame]:
    payload = payload_from_proto(request)
    source.check(payload)
    return source.decode(payload)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = make_video(tmp_path_factory.mktemp("video"))
    return path


def _decode_all(
    video: Path, kind: str, chunk_size: int, first_frame: int = 0, skip_frames: int = 0
) -> list[VideoFrame]:
    input_kind = pb.INPUT_KIND_MPEGTS if kind == "mpegts" else pb.INPUT_KIND_FMP4
    config = config_request(input_kind, "t", first_frame=first_frame, skip_frames=skip_frames)
    source = FrameSource(parse_config(config))
    frames = []
    for seq, chunk in enumerate(remux_streamable(video, kind, chunk_size=chunk_size)):
        frames += _accept(source, chunk_request(seq, chunk))
    return frames + source.finish()


@pytest.mark.parametrize("kind", ["mpegts", "fmp4"])
def test_chunked_stream_decodes_like_the_file_whatever_the_chunking(video, kind) -> None:
    reference = list(VideoReader(str(video)))
    for chunk_size in (188 * 3, 64 * 1024):
        frames = _decode_all(video, kind, chunk_size, first_frame=100)
        assert [f.index for f in frames] == [100 + f.index for f in reference]
        if kind == "mpegts":  # what the client sends; fMP4 pts: see docs/service.md (known gap)
            assert [f.pts for f in frames] == [f.pts for f in reference]
        assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, reference, strict=True))


def test_a_resumed_byte_stream_skips_exactly_the_answered_frames(video: Path) -> None:
    """Resume of a byte stream: sent again from byte 0 with skip_frames = N, the source yields
    frames N.. with the indices, pts and pixels of the uncut decode."""
    whole = _decode_all(video, "mpegts", 188 * 7)
    for skip in (1, 9, len(whole) - 1):
        rest = _decode_all(video, "mpegts", 64 * 1024, skip_frames=skip)
        assert [f.index for f in rest] == [f.index for f in whole[skip:]]
        assert [f.pts for f in rest] == [f.pts for f in whole[skip:]]
        pairs = zip(rest, whole[skip:], strict=True)
        assert all(np.array_equal(a.image, b.image) for a, b in pairs)


def test_messages_are_checked_on_arrival(video: Path) -> None:
    settings = parse_config(config_request(pb.INPUT_KIND_MPEGTS, "cam", resume_from=10))
    source = FrameSource(settings)
    chunk = next(iter(remux_to_mpegts(video, chunk_size=188 * 10)))
    with pytest.raises(StreamError, match="stream 'cam': sequence gap: expected seq 10, got"):
        source.check(payload_from_proto(chunk_request(12, chunk)))
    source.check(payload_from_proto(chunk_request(10, chunk)))  # checked, not yet decoded
    with pytest.raises(StreamError, match="sequence duplicate: expected seq 11, got seq 10"):
        source.check(payload_from_proto(chunk_request(10, chunk)))
    with pytest.raises(StreamError, match="a second StreamConfig after seq 10"):
        source.check(payload_from_proto(config_request(pb.INPUT_KIND_MPEGTS, "cam")))
    with pytest.raises(StreamError, match="expected a chunk message for input kind mpegts"):
        source.check(payload_from_proto(pb.StreamRequest()))
    source.discard()


def test_a_stream_without_chunks_is_empty_not_broken() -> None:
    source = FrameSource(parse_config(config_request(pb.INPUT_KIND_MPEGTS, "idle")))
    assert source.finish() == []


@pytest.mark.parametrize(("config", "message"), [
    (pb.StreamConfig(stream_id="a"), "input_kind is unspecified"),
    (pb.StreamConfig(stream_id="b", input_kind=pb.INPUT_KIND_RAW_RGB),
     "RAW_RGB needs raw_shape width and height in 1..8192, got 0x0"),
    (pb.StreamConfig(stream_id="c", input_kind=pb.INPUT_KIND_IMAGES,
                     sampling=pb.Sampling(max_fps=-1)), "sampling.max_fps must be >= 0"),
    (pb.StreamConfig(stream_id="d", input_kind=pb.INPUT_KIND_IMAGES, max_queue=1000),
     "max_queue 1000 is above this server's limit of 64"),
])
def test_invalid_configs_are_named(config: pb.StreamConfig, message: str) -> None:
    with pytest.raises(StreamError) as caught:
        parse_config(pb.StreamRequest(config=config))
    assert message in str(caught.value)
    assert f"stream {config.stream_id!r}: config:" in str(caught.value)


def test_stream_sampling_maps_to_the_runner_modes() -> None:
    default = RunnerConfig()
    def settings(**sampling: object) -> StreamSettings:
        config = config_request(pb.INPUT_KIND_IMAGES, "s", sampling=pb.Sampling(**sampling),
                                first_track_id=40)
        return parse_config(config)

    assert runner_config(settings(), default).detect_every == default.detect_every
    assert runner_config(settings(), default).adaptive
    every = runner_config(settings(detect_every=1), default)
    assert (every.detect_every, every.adaptive, every.read_changes_only) == (
        1, EVERY_FRAME.adaptive, EVERY_FRAME.read_changes_only)
    fixed = runner_config(settings(detect_every=3, fixed_keyframes=True), default)
    assert (fixed.detect_every, fixed.adaptive) == (3, False)
    assert runner_config(settings(), default).tracker.first_id == 40


def test_max_fps_thins_keyframes_by_pts() -> None:
    pts = [i / 25 for i in range(50)]
    every3 = VideoRunner(None, RunnerConfig(detect_every=3, adaptive=False))
    assert [i for i in range(50) if every3.is_keyframe(i, pts[i])] == list(range(0, 50, 3))
    # At most 5 per second of pts at 25 fps: every 5th frame.
    capped = VideoRunner(None, replace(EVERY_FRAME, min_keyframe_gap_s=0.2))
    keys = []
    for i in range(50):
        frame = VideoFrame(i, pts[i], np.zeros((0, 0, 3), np.uint8))
        if capped.is_keyframe(i, pts[i]):
            keys.append(i)
            capped.track_frame(frame, [])
        else:
            capped.track_frame(frame, None)
    assert keys == list(range(0, 50, 5))


def _frame(index: int) -> QueuedFrame:
    return QueuedFrame(seq=index, frame=VideoFrame(index, None, np.zeros((2, 2, 3), np.uint8)))


async def _fill_then_drain(
    policy: str, max_waiting: int, count: int
) -> tuple[list[QueuedFrame], list[int]]:
    """Put `count` frames with nobody taking any (the client outruns the server); returns the
    frames as they leave, and how many waited with their pixels after each put."""
    queue = FrameQueue(policy, max_waiting)
    waiting = []
    for index in range(count):
        await queue.put(_frame(index))
        waiting.append(queue.waiting)
    await queue.close()
    out = []
    while (item := await queue.get()) is not None:
        out.append(item)
    return out, waiting


def test_drop_policies_keep_order_and_account_for_every_frame() -> None:
    latest, waiting = asyncio.run(_fill_then_drain("keep_latest", 3, 6))
    assert [i.frame.index for i in latest] == list(range(6))
    # Over the bound, everything but the newest frame is dropped: the stream catches up.
    assert waiting == [1, 2, 3, 1, 2, 3]
    assert [i.dropped for i in latest] == [True] * 3 + [False] * 3
    assert all(i.frame.image.size == 0 for i in latest if i.dropped)  # pixels released
    oldest, waiting = asyncio.run(_fill_then_drain("drop_oldest", 3, 6))
    assert waiting == [1, 2, 3, 3, 3, 3]  # one at a time, oldest first
    assert [i.dropped for i in oldest] == [True] * 3 + [False] * 3
    kept, waiting = asyncio.run(_fill_then_drain("drop_oldest", 8, 6))
    assert not any(i.dropped for i in kept)  # within the bound nothing is dropped


def test_policy_none_holds_the_reader_until_a_frame_is_taken() -> None:
    async def scenario() -> tuple[bool, bool]:
        queue = FrameQueue("none", 2)
        await queue.put(_frame(0))
        await queue.put(_frame(1))
        waiter = asyncio.create_task(queue.wait_for_room())
        for _ in range(5):
            await asyncio.sleep(0)  # let the waiter run as far as it can
        blocked = not waiter.done()
        await queue.get()
        await asyncio.wait_for(waiter, timeout=5)
        return blocked, waiter.done()

    assert asyncio.run(scenario()) == (True, True)
