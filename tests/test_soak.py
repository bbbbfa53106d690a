"""The short soak (issue 11): 16 concurrent live streams against one embedded server, on
loopback, for 20 s; no frame lost, and the RSS does not grow after the warm-up.

The long one is `python bench/soak.py` (docs/reliability.md#soak); this runs the same code
(`bench.soak.soak`) against a server in this process, so the RSS sampled is the test
process's: server and the 16 clients together.

Pace: 5 frames/s per stream (80 frames/s in all) of a 320x192 synthetic video, MPEG-TS in
4 KB chunks, the server's default (adaptive) keyframe mode and `keep_latest`, so a busy 2-core
machine keeps up by dropping what it cannot spot in time: dropped frames are still answered
(flagged), so "lost" stays 0 whatever the load. Takes ~25 s on a quiet machine plus the model
load, ~40 s under load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from grpc_harness import MAX_SIDE, BackgroundServer

from bench.soak import soak, soak_video
from pipeline.spotter import Spotter
from services.client import StreamOptions

STREAMS, SECONDS, FPS = 16, 20.0, 5.0
WARMUP_S = SECONDS / 2  # every stream open, its decoder and runner allocated (slower when busy)
RSS_GROWTH_BOUND_MIB = 64.0  # over the second half; observed 0-16 MiB


@pytest.fixture(scope="module")
def server() -> BackgroundServer:
    with BackgroundServer(Spotter.load(max_side=MAX_SIDE)) as running:
        yield running


def test_short_soak(server: BackgroundServer, tmp_path: Path) -> None:
    video = soak_video(tmp_path, SECONDS, FPS)
    report = soak(server.target, os.getpid(), video, STREAMS,
                  StreamOptions(drop_policy="keep_latest"), SECONDS, warmup_s=WARMUP_S)
    print(json.dumps(report))
    assert report["errors"] == []
    assert report["frames_sent"] == STREAMS * SECONDS * FPS
    assert report["frames_lost"] == 0
    assert report["every_frame_once_in_order"]
    assert report["rss_growth_mib_after_warmup"] < RSS_GROWTH_BOUND_MIB
    assert server.server is not None and server.server.service.open_streams == 0
