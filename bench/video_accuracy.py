"""Video accuracy and throughput: ClipSpot's three modes against peers run per frame.

Clips (made here, exact ground truth): camera-motion report clips over IC15 validation stills at
640x360 and 960x540 (`clipspot synth camera --split report`, docs/video.md) and a synthetic
scene clip (`clipspot synth video`). ClipSpot runs every frame / fixed k=5 / adaptive (the
default); each peer runs on every frame and its words go through ClipSpot's own tracker
(`pipeline.track.TextTracker`, default config) updated on every frame, so tracking is equal and
the comparison is of what each engine finds and reads. Scored with `clipspot eval`'s video
protocol (MOTA, MOTP, IDF1, track-level end-to-end; means over clips).

Throughput: every engine decodes the clips into memory first and is timed on its frames alone,
in its own process; engines alternate within each repeat (the order rotates), so a drift of
the shared machine's load hits all of them; ratios ClipSpot/peer are taken within a repeat and
their spread over repeats is reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    DATA,
    PEER_SPOT,
    PEERS_PYTHON,
    PRODUCT_PYTHON,
    log,
    peers_available,
    percentiles,
    run_json,
)
from pipeline.data.video_gt import read_video_gt
from pipeline.eval.video_protocol import evaluate_video, mean_over_videos
from pipeline.jsonl import read_frame_results
from pipeline.track.tracker import TextTracker, TrackerConfig
from pipeline.types import FrameResult

CLIPSPOT_MODES = ("every", "fixed", "adaptive")
# (label, engine, setting): peers with their defaults; RapidOCR also with its word boxes
PEER_ARMS = (("rapidocr", "rapidocr", "default"), ("rapidocr_words", "rapidocr", "default+words"),
             ("easyocr", "easyocr", "default"), ("tesseract", "tesseract", "default"))
SLOW = {"easyocr"}  # seconds a frame on 2 cores: only in the first repeat, to bound the run


def make_clips(out: Path, seconds: float, count: int, only: tuple[str, ...] | None = None
               ) -> dict[str, list[Path]]:
    """group -> clip paths; made once per length (same seed, same bytes)."""
    from services.cli.main import main as clipspot

    groups = {
        "camera_640x360": ["camera", "--ic15", str(DATA / "ic15_train"), "--split", "report",
                           "--count", str(count), "--seed", "1"],
        "camera_960x540": ["camera", "--ic15", str(DATA / "ic15_train"), "--split", "report",
                           "--count", "1", "--seed", "1", "--width", "960", "--height", "540"],
        "synthetic_640x360": ["video", "--seed", "0"],
    }
    clips = {}
    for group, argv in groups.items():
        if only and group not in only:
            continue
        folder = out / f"clips_{group}_{seconds:g}s"
        if not list(folder.glob("*.mp4")):
            with contextlib.redirect_stdout(io.StringIO()):
                clipspot(["synth", *argv, "--out", str(folder), "--seconds", str(seconds)])
        clips[group] = sorted(folder.glob("*.mp4"))
    return clips


def track(results: list[FrameResult]) -> list[FrameResult]:
    """A peer's per-frame words through ClipSpot's tracker, updated on every frame."""
    tracker, out = TextTracker(TrackerConfig()), []
    for r in sorted(results, key=lambda r: r.frame):
        instances, _ = tracker.update(r.frame, r.pts, list(r.instances))
        out.append(FrameResult(r.source, r.frame, r.pts, instances))
    tracker.finish()
    return out


def score(pred: Path, clips: dict[str, list[Path]], tracked: bool, first: int | None = None
          ) -> dict[str, Any]:
    """Means per clip group; with `first`, on each clip's first frames only (the slow peer)."""
    by_source: dict[str, list[FrameResult]] = {}
    for r in read_frame_results(pred):
        if first is None or r.frame < first:
            by_source.setdefault(r.source, []).append(r)
    scores = {}
    for group, paths in clips.items():
        per_video = []
        for path in paths:
            results = by_source.get(str(path), [])
            results = results if tracked else track(results)
            gt = read_video_gt(path.with_suffix(".json"))
            if first is not None:
                gt = dataclasses.replace(gt, frames=gt.frames[:first])
            per_video.append(evaluate_video(gt, results))
        mean = mean_over_videos(per_video)
        scores[group] = {"mota": round(mean["tracking"]["mota"], 4),
                         "motp": round(mean["tracking"]["motp"], 4),
                         "idf1": round(mean["tracking"]["idf1"], 4),
                         "track_e2e": {k: round(v, 4) for k, v in mean["track_e2e"].items()}}
    return scores


def group_speed(stats: dict[str, Any], clips: dict[str, list[Path]]) -> dict[str, Any]:
    """frames/s and latency per clip group, from the per-frame latencies of one run."""
    out = {}
    for group, paths in clips.items():
        lat = [x for p in paths for x in stats["latency_ms"].get(str(p), [])]
        out[group] = {"fps": round(len(lat) / (sum(lat) / 1000), 3) if lat else 0.0,
                      **percentiles(lat)}
    return out


def run_arm(label: str, every: list[Path], out: Path, threads: int, slow: int | None
            ) -> dict[str, dict]:
    """One process: ClipSpot's modes (label 'clipspot') or one peer arm -> label -> stats."""
    if label == "clipspot":
        stats = run_json([str(PRODUCT_PYTHON), "-m", "bench.clipspot_worker", "--modes",
                          ",".join(CLIPSPOT_MODES), "--threads", str(threads), "--out-dir",
                          str(out), *map(str, every)], 7200)
        if "error" in stats:
            return {f"clipspot_{m}": stats for m in CLIPSPOT_MODES}
        return {f"clipspot_{m}": {**s, "peak_rss_mb": stats["peak_rss_mb"],
                                  "load_average": stats["load_average"],
                                  "pred": str(out / f"clipspot_{m}.jsonl")}
                for m, s in stats["modes"].items()}
    _, engine, setting = next(a for a in PEER_ARMS if a[0] == label)
    pred = out / f"{label}.jsonl"
    command = [str(PEERS_PYTHON), str(PEER_SPOT), "--engine", engine, "--setting",
               setting.removesuffix("+words"), "--threads", str(threads), "--out", str(pred),
               *map(str, every)] + (["--words"] if setting.endswith("+words") else [])
    if label in SLOW and slow:
        command += ["--max-frames", str(slow)]
    return {label: {**run_json(command, 7200), "pred": str(pred), "first": slow}}


def summarise(runs: list[dict[str, dict]], clips: dict[str, list[Path]], slow: int | None
              ) -> dict[str, Any]:
    """Per arm: scores (first repeat), speed per group and overall with the spread over repeats."""
    arms: dict[str, Any] = {}
    for label in runs[0]:
        first = runs[0][label]
        if "error" in first:
            arms[label] = {"error": first["error"]}
            continue
        fps = [r[label]["fps"] for r in runs if "fps" in r.get(label, {})]
        lat = [x for r in runs if "latency_ms" in r.get(label, {})
               for v in r[label]["latency_ms"].values() for x in v]
        arms[label] = {
            "scores": score(Path(first["pred"]), clips, label.startswith("clipspot")),
            "fps": {"median": round(float(np.median(fps)), 3), "min": min(fps), "max": max(fps)},
            "by_group": group_speed(first, clips), **percentiles(lat),
            "cpu_s_per_frame": round(first["cpu_s"] / max(1, first["frames"]), 4),
            "peak_rss_mb": first.get("peak_rss_mb"), "frames": first["frames"],
            "load_average": first.get("load_average"),
            "latency_ms_sample": sorted(lat)[:: max(1, len(lat) // 400)],
        }
        if label in SLOW and slow:  # fewer frames: score ClipSpot on the same ones too
            arms[label]["scores"] = score(Path(first["pred"]), clips, False, slow)
            arms[label]["first_frames"] = slow
            ours = runs[0].get("clipspot_adaptive", {})
            if "pred" in ours:
                arms[label]["clipspot_adaptive_same_frames"] = score(
                    Path(ours["pred"]), clips, True, slow)
    ours = "clipspot_adaptive"
    for label, arm in arms.items():
        if label.startswith("clipspot") or "error" in arm or "error" in arms.get(ours, {}):
            continue
        ratios = [r[ours]["fps"] / r[label]["fps"] for r in runs
                  if r.get(label, {}).get("fps") and r[ours].get("fps")]
        arm["clipspot_adaptive_over_this_fps"] = {
            "median": round(float(np.median(ratios)), 2), "min": round(min(ratios), 2),
            "max": round(max(ratios), 2), "repeats": len(ratios)}
    return arms


def run(out: Path, seconds: float, camera_clips: int, repeats: int, threads: int = 2,
        groups: tuple[str, ...] | None = None, slow: int | None = None) -> dict[str, Any]:
    """`slow`: EasyOCR sees only each clip's first `slow` frames (None: all)."""
    out.mkdir(parents=True, exist_ok=True)
    clips = make_clips(out, seconds, camera_clips, groups)
    every = [p for paths in clips.values() for p in paths]
    labels = ["clipspot"] + ([a[0] for a in PEER_ARMS] if peers_available() else [])
    runs = []
    for repeat in range(repeats):
        order = labels[repeat % len(labels):] + labels[: repeat % len(labels)]
        merged: dict[str, dict] = {}
        for label in order:
            if repeat and label in SLOW:
                continue
            log(f"video: repeat {repeat + 1}/{repeats}, {label} on {len(every)} clips")
            merged.update(run_arm(label, every, out / f"repeat_{repeat}", threads, slow))
        runs.append(merged)
    frames = {g: [len(read_video_gt(p.with_suffix(".json")).frames) for p in ps]
              for g, ps in clips.items()}
    return {"clips": {g: [p.name for p in ps] for g, ps in clips.items()},
            "frames": frames, "seconds": seconds, "repeats": repeats,
            "slow_first_frames": slow, "arms": summarise(runs, clips, slow)}
