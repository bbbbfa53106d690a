"""The benchmark harness runs end to end on a few images and frames (ClipSpot only; the peers
need .venv-peers, which CI does not have). A smoke test of bench/, not a benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import SHARED_DATA

ROOT = Path(__file__).resolve().parent.parent
IC15 = SHARED_DATA / "ic15_train"

pytestmark = pytest.mark.skipif(not IC15.is_dir(), reason="needs ../shared/data/ic15_train")


def test_bench_smoke_writes_every_part(tmp_path: Path) -> None:
    out, docs = tmp_path / "bench", tmp_path / "docs"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "bench", "--smoke", "--no-peers", "--no-ray",
         "--out", str(out), "--docs", str(docs)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    assert {"machine", "image", "video", "service", "model", "tcm", "wall_s"} <= set(res)
    val = res["image"]["val"]["results"]["clipspot"]
    assert 0.0 <= val["detection"]["hmean"] <= 1.0 and "s_per_image" in val["stats"]
    arms = res["video"]["arms"]
    assert {"clipspot_every", "clipspot_fixed", "clipspot_adaptive"} <= set(arms)
    for arm in arms.values():
        assert {"scores", "fps", "p50_ms", "p99_ms", "cpu_s_per_frame", "peak_rss_mb"} <= set(arm)
    level = res["service"]["servers"]["embedded"][0]
    assert level["lost"] == 0 and level["rss_mb"]
    # keyframes/s comes from the server's own counter: some detected, never more than answered
    assert 0 < level["keyframes"] <= round(level["fps_spotted"] * level["wall_s"])
    assert res["model"]["detectors"] and res["model"]["readers"]
    assert res["tcm"]["rows"][0]["tcm_ms"] > 0
    assert "IC15 val det hmean" in done.stdout  # the headline lines
    assert "## Video" in (docs / "benchmarks.md").read_text()
