"""The per-stream state machine without a transport: decoding chunks, sampling, drop policies,
config validation. Real video bytes through the real decoder; asyncio only for the queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from grpc_harness import chunk_request, config_request, make_video

from pipeline.decode import VideoReader, remux_streamable, remux_to_mpegts
from pipeline.types import VideoFrame
from services.frame_queue import FrameQueue, QueuedFrame
from services.rpc.clipspot.v1 import spotting_pb2 as pb
from services.session import FrameSource, Sampler, StreamError, parse_config


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = make_video(tmp_path_factory.mktemp("video"))
    return path


def _decode_all(video: Path, kind: str, chunk_size: int, first_frame: int) -> list[VideoFrame]:
    input_kind = pb.INPUT_KIND_MPEGTS if kind == "mpegts" else pb.INPUT_KIND_FMP4
    source = FrameSource(parse_config(config_request(input_kind, "t", first_frame=first_frame)))
    frames = []
    for seq, chunk in enumerate(remux_streamable(video, kind, chunk_size=chunk_size)):
        frames += source.accept(chunk_request(seq, chunk))
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


def test_frame_source_rejects_gaps_and_foreign_messages(video: Path) -> None:
    settings = parse_config(config_request(pb.INPUT_KIND_MPEGTS, "cam", resume_from=10))
    source = FrameSource(settings)
    chunk = next(iter(remux_to_mpegts(video, chunk_size=188 * 10)))
    with pytest.raises(StreamError, match="stream 'cam': sequence gap: expected seq 10, got"):
        source.accept(chunk_request(0, chunk))
    source.accept(chunk_request(10, chunk))
    with pytest.raises(StreamError, match="a second StreamConfig after seq 10"):
        source.accept(config_request(pb.INPUT_KIND_MPEGTS, "cam"))
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


def test_sampler_keyframes_follow_index_then_fps() -> None:
    pts = [i / 25 for i in range(50)]
    every3 = Sampler(3, 0.0)
    assert [i for i in range(50) if every3.wants(VideoFrame(i, pts[i], None))] == list(
        range(0, 50, 3))
    # At most 5 per second of pts at 25 fps: every 5th frame.
    capped = Sampler(1, 5.0)
    assert [i for i in range(50) if capped.wants(VideoFrame(i, pts[i], None))] == list(
        range(0, 50, 5))


def _frame(index: int) -> QueuedFrame:
    return QueuedFrame(seq=index, frame=VideoFrame(index, None, np.zeros((2, 2, 3), np.uint8)),
                       spot=True)


async def _fill_then_drain(policy: str, max_waiting: int, count: int) -> list[QueuedFrame]:
    queue = FrameQueue(policy, max_waiting)
    for index in range(count):  # nobody spots meanwhile: the client outruns the server
        await queue.put(_frame(index))
    await queue.close()
    out = []
    while (item := await queue.get()) is not None:
        out.append(item)
    return out


def test_drop_policies_keep_order_and_account_for_every_frame() -> None:
    latest = asyncio.run(_fill_then_drain("keep_latest", 8, 6))
    assert [i.frame.index for i in latest] == list(range(6))
    assert [i.dropped for i in latest] == [True] * 5 + [False]
    assert all(i.frame.image.size == 0 for i in latest if i.dropped)  # pixels released
    oldest = asyncio.run(_fill_then_drain("drop_oldest", 2, 6))
    assert [i.dropped for i in oldest] == [True] * 4 + [False] * 2


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
