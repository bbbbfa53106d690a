"""The paper's ablation on our code (issue 13, 5b): CLIP-side modules on vs off, full and
few-shot training data, two seeds, one stated budget per arm.

Arms: `cr50_cpu` (prompt + BSM + VPG + ILM, the shipped topology) against `cr50_cpu_plain`
(the same backbone, FPN-C and DB head without them), each trained from scratch (no CLIP
checkpoint exists here) for the same number of steps on all of IC15 img_1-800 or on an evenly
spread 10 % of them, then scored once on img_901-1000 with default DB thresholds at 960x640.
Every arm runs in its own process on one thread; `--parallel 2` keeps both cores busy, and the
runs are resumable (a finished arm's result file is reused). Writes OUT/ablation.json and
OUT/ablation.md (the tables of docs/benchmarks.md).

    .venv/bin/python -m bench.ablation --out out/ablation [--steps 1500 --crop 256]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import DATA, PRODUCT_PYTHON, ROOT, load_average, log, machine, write_json

VARIANTS = {"on": "cr50_cpu", "off": "cr50_cpu_plain"}
FEW_SHOT_IMAGES = 80  # 10 % of img_1-800


def arm_name(modules: str, images: int | None, seed: int) -> str:
    return f"{modules}_{'full' if images is None else f'{images}img'}_s{seed}"


def train_and_score(out: Path, modules: str, images: int | None, seed: int,
                    steps: int, crop: int, batch: int, lr: float) -> dict[str, Any]:
    """Train one arm and score it on validation, in this process (one thread)."""
    import torch

    from pipeline.model.checkpoint import build_detector
    from pipeline.train.detector_training import DetectorTrainConfig, train_detector, validate

    cfg = DetectorTrainConfig(
        ic15_root=str(DATA / "ic15_train"), out_dir=str(out / arm_name(modules, images, seed)),
        variant=VARIANTS[modules], steps=steps, batch_size=batch, crop=crop, lr=lr,
        warmup_steps=min(100, steps // 10), synth_fraction=0.0, threads=1, workers=0,
        device="cpu", val_every=steps, seed=seed, train_images=images,
    )
    started = time.process_time()
    trained = train_detector(cfg)
    train_cpu_s = time.process_time() - started
    last = Path(cfg.out_dir) / "last.pt"  # the final step: no selection, same rule every arm
    state = torch.load(last, map_location="cpu", weights_only=True)
    model = build_detector(state["config"], state["model"], str(last))
    with torch.no_grad():
        val = validate(model, cfg, "val")
    # the trainer validated on tune once, at its last step: that is best_hmean
    return {"modules": modules, "train_images": images or 800, "seed": seed,
            "variant": cfg.variant, "steps": trained["step"], "train_s": trained["seconds"],
            "train_cpu_s": train_cpu_s, "tune_hmean": trained["best_hmean"], "val": val}


def run_arm(out: Path, arm: tuple[str, int | None, int], args: argparse.Namespace
            ) -> dict[str, Any]:
    """One arm in a child process (its own torch, one thread); reuse a finished result."""
    modules, images, seed = arm
    result_path = out / f"{arm_name(*arm)}.json"
    if not result_path.exists():
        log(f"ablation: training {arm_name(*arm)}")
        command = [str(PRODUCT_PYTHON), "-m", "bench.ablation", "--out", str(out), "--one",
                   f"{modules},{images or 0},{seed}", "--steps", str(args.steps),
                   "--crop", str(args.crop), "--batch", str(args.batch), "--lr", str(args.lr)]
        env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
        subprocess.run(command, cwd=ROOT, env=env, check=True)
    return json.loads(result_path.read_text())


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and spread of val detection hmean per (modules, data) over seeds."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["modules"], row["train_images"]), []).append(row)
    table = []
    for (modules, images), group in sorted(groups.items()):
        hmeans = [r["val"]["hmean"] for r in group]
        table.append({"modules": modules, "train_images": images, "seeds": len(group),
                      "val_hmean_mean": sum(hmeans) / len(hmeans),
                      "val_hmean_min": min(hmeans), "val_hmean_max": max(hmeans),
                      "train_cpu_min_mean": sum(r["train_cpu_s"] for r in group) / 60 / len(group)})
    return table


def markdown(report: dict[str, Any]) -> str:
    """The arms and their summary as the tables docs/benchmarks.md shows."""
    lines = ["| CLIP-side modules | training images | seed | steps | train CPU min | tune det H "
             "| **val det P / R / H** |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in sorted(report["arms"], key=lambda r: (-r["train_images"], r["modules"], r["seed"])):
        v = r["val"]
        lines.append(f"| {r['modules']} | {r['train_images']} | {r['seed']} | {r['steps']} | "
                     f"{r['train_cpu_s'] / 60:.1f} | {r['tune_hmean']:.3f} | {v['precision']:.3f}"
                     f" / {v['recall']:.3f} / **{v['hmean']:.3f}** |")
    lines += ["", "| CLIP-side modules | training images | seeds | val det H mean [min–max] |",
              "|---|---:|---:|---|"]
    for g in sorted(report["summary"], key=lambda g: (-g["train_images"], g["modules"])):
        lines.append(f"| {g['modules']} | {g['train_images']} | {g['seeds']} | "
                     f"{g['val_hmean_mean']:.3f} [{g['val_hmean_min']:.3f}–"
                     f"{g['val_hmean_max']:.3f}] |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "ablation")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child: modules,images(0=all),seed
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one:
        modules, images, seed = args.one.split(",")
        arm = (modules, int(images) or None, int(seed))
        result = train_and_score(args.out, *arm, args.steps, args.crop, args.batch, args.lr)
        write_json(args.out / f"{arm_name(*arm)}.json", result)
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    # seed-major order: the two processes running at once are the same arm with two seeds,
    # so both seeds of an arm see the same contention
    arms = [(m, n, s) for (n, m), s in
            itertools.product(itertools.product((FEW_SHOT_IMAGES, None), VARIANTS), seeds)]
    started, load_before = time.time(), load_average()
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda arm: run_arm(args.out, arm, args), arms))
    report = {"machine": machine(), "load_before": load_before, "load_after": load_average(),
              "wall_min": (time.time() - started) / 60,
              "budget": {"steps": args.steps, "crop": args.crop, "batch": args.batch,
                         "lr": args.lr, "threads_per_arm": 1, "init": "from scratch"},
              "arms": rows, "summary": summarise(rows)}
    write_json(args.out / "ablation.json", report)
    (args.out / "ablation.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
