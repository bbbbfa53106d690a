"""The one benchmark harness: runs the parts, writes out/bench/results.json and the report.

    .venv/bin/clipspot bench --quick          # < 10 min once .venv-peers exists
    .venv/bin/clipspot bench                  # the capped full run of docs/benchmarks.md
    .venv/bin/clipspot bench --parts image,video --out out/bench_x --docs /tmp/docs

Peers come from `bash bench/peers/setup.sh` (.venv-peers); without it ClipSpot runs alone.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench import image_accuracy, model_speed, report, service_load, tcm_speed, video_accuracy
from bench.common import PEERS_PYTHON, ROOT, load_average, log, machine, write_json

PARTS = report.PARTS

# Caps per preset. EasyOCR takes seconds a frame on 2 shared cores: it sees only the first
# `slow_images` images of each set and `slow_frames` frames of each clip, and ClipSpot is
# scored on those same ones beside it (`clipspot_same_images` / `..._same_frames`).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"val": 8, "tune": 3, "synth": 4, "video_s": 0.6, "camera_clips": 1,
              "repeats": 2, "load_s": 2.0, "variants": ["cr50_cpu"], "runs": 3,
              "tcm_rounds": 2, "tcm_runs": 2, "slow_images": 3, "slow_frames": 4},
    "full": {"val": 100, "tune": 100, "synth": 8, "video_s": 1.2, "camera_clips": 2,
             "repeats": 3, "load_s": 4.0, "variants": ["cr50_cpu", "cr50_full"], "runs": 3,
             "tcm_rounds": 3, "tcm_runs": 3, "slow_images": 16, "slow_frames": 8},
    "smoke": {"val": 2, "tune": 1, "synth": 1, "video_s": 0.2, "camera_clips": 1,
              "repeats": 1, "load_s": 0.4, "variants": ["cr50_tiny"], "runs": 1,
              "tcm_rounds": 1, "tcm_runs": 1, "groups": ("synthetic_640x360",),
              "threads": (2,)},
}


def run_parts(parts: list[str], preset: dict[str, Any], out: Path, ray: bool,
              peers: bool) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if not peers:  # the smoke test: ClipSpot alone even where .venv-peers exists
        image_accuracy.peers_available = video_accuracy.peers_available = lambda: False
    if "image" in parts:
        res["image"] = image_accuracy.run(out / "image", preset["val"], preset["tune"],
                                          preset["synth"], slow=preset.get("slow_images"))
    if "video" in parts:
        res["video"] = video_accuracy.run(out / "video", preset["video_s"],
                                          preset["camera_clips"], preset["repeats"],
                                          groups=preset.get("groups"),
                                          slow=preset.get("slow_frames"))
    if "service" in parts:
        levels = (1, 4, 16) if preset is not PRESETS["smoke"] else (1,)
        res["service"] = service_load.run(out / "service", preset["load_s"], levels,
                                          with_ray=ray)
    if "model" in parts:
        res["model"] = model_speed.run(preset["variants"], preset["runs"], warmup=1,
                                       threads_list=preset.get("threads", (1, 2)))
    if "tcm" in parts:
        res["tcm"] = tcm_speed.run(preset["variants"], preset["tcm_rounds"], preset["tcm_runs"])
    return res


def main(preset_name: str, out: Path, docs: Path | None, parts: list[str], ray: bool = True,
         peers: bool = True) -> int:
    """Run, save the JSON, write the report, print the headlines. Returns the exit code."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"clipspot bench: unknown part(s) {unknown}; known: {', '.join(PARTS)}")
    start = time.perf_counter()
    res: dict[str, Any] = {"machine": machine(), "preset": preset_name,
                           "command": "clipspot " + shlex.join(sys.argv[1:]) if sys.argv[1:2]
                           == ["bench"] else f"clipspot bench ({preset_name})"}
    log(f"bench {preset_name}: parts {', '.join(parts)}; results in {out}")
    res.update(run_parts(parts, PRESETS[preset_name], out, ray, peers))
    res["wall_s"] = round(time.perf_counter() - start, 1)
    res["load_average_end"] = load_average()
    path = out / "results.json"
    write_json(path, res)
    if docs is not None:
        report.write(res, path, docs, PEERS_PYTHON)
    print("\n".join(report.headlines(res)))
    print(f"results: {path}; wall {res['wall_s'] / 60:.1f} min; load average at end "
          f"{res['load_average_end']}")
    return 0


if __name__ == "__main__":
    print(json.dumps(PRESETS, indent=1))
    print(f"run it as `clipspot bench` from {ROOT}")
