"""Image accuracy: every engine on IC15 validation and on synthetic images, `clipspot eval`.

Each engine runs in its own process over the same images (ClipSpot in .venv, the peers in
.venv-peers) and writes ClipSpot's JSON Lines; `clipspot eval` scores detection and end-to-end
(ICDAR 2015 rules, generic English words). Peers run with their defaults and with one tuning:
two candidates each (bench/peers/peer_spot.py), the better end-to-end hmean on IC15
img_801-900 (training images, never the validation ones) is kept. RapidOCR, which returns text
lines, is also scored with its word boxes (`Global.return_word_box`).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from bench.common import DATA, PEER_SPOT, PEERS_PYTHON, PRODUCT_PYTHON, log, peers_available
from bench.common import run_json as run_worker

PEERS = ("rapidocr", "easyocr", "tesseract")
SLOW = "easyocr"  # seconds an image on 2 cores: may get fewer images (`slow` caps), see below
IC15 = DATA / "ic15_train"


def evaluate(gt: Path, pred: Path, image_range: str | None) -> dict[str, Any]:
    """`clipspot eval` itself (its code path, in this process)."""
    from services.cli.main import main as clipspot

    argv = ["eval", "--gt", str(gt), "--pred", str(pred)]
    if image_range:
        argv += ["--images", image_range]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        clipspot(argv)
    scores = json.loads(buffer.getvalue())
    return {k: {m: round(scores[k][m], 4) for m in ("precision", "recall", "hmean")}
            for k in ("detection", "end_to_end")}


def image_set(name: str, first: int, count: int) -> tuple[list[Path], Path, str]:
    """IC15 images img_first.. (count of them), their gt folder and `--images` range."""
    last = first + count - 1
    paths = [IC15 / "images" / f"img_{n}.jpg" for n in range(first, last + 1)]
    return paths, IC15 / "gt", f"{first}-{last}"


def synthetic_set(out: Path, count: int) -> tuple[list[Path], Path, str]:
    from services.cli.main import main as clipspot

    folder = out / "synth_images"
    if not (folder / f"img_{count}.jpg").exists():
        with contextlib.redirect_stdout(io.StringIO()):
            clipspot(["synth", "images", "--out", str(folder), "--count", str(count),
                      "--seed", "13"])
    return [folder / f"img_{n}.jpg" for n in range(1, count + 1)], folder, f"1-{count}"


def run_engine(label: str, engine: str, setting: str, images: list[Path], out: Path,
               threads: int) -> tuple[Path, dict[str, Any]]:
    """One engine over the images -> (its predictions, its statistics)."""
    pred = out / f"{label}.jsonl"
    if engine == "clipspot":
        stats = run_worker([str(PRODUCT_PYTHON), "-m", "bench.clipspot_worker", "--threads",
                            str(threads), "--out-dir", str(out), *map(str, images)], 3600)
        (out / "clipspot_image.jsonl").replace(pred)
        modes = stats.pop("modes", {})
        stats = {**stats, **modes.get("image", {})}
    else:
        words = setting.endswith("+words")
        command = [str(PEERS_PYTHON), str(PEER_SPOT), "--engine", engine, "--setting",
                   setting.removesuffix("+words"), "--threads", str(threads), "--out", str(pred),
                   *map(str, images)] + (["--words"] if words else [])
        stats = run_worker(command, 3600)
    stats.pop("latency_ms", None)
    if "frames" in stats:
        stats["s_per_image"] = round(stats["wall_s"] / max(1, stats["frames"]), 3)
        stats["cpu_s_per_image"] = round(stats["cpu_s"] / max(1, stats["frames"]), 3)
    return pred, stats


def score_set(arms: list[tuple[str, str, str]], images: list[Path], gt: Path,
              image_range: str | None, out: Path, threads: int, slow: int | None = None
              ) -> dict[str, Any]:
    """Each arm over the images; the slow engine over the first `slow` only, and then ClipSpot
    is also scored on those same images (`clipspot_same_images`), so that pair compares."""
    results = {}
    for label, engine, setting in arms:
        mine, mine_range = images, image_range
        if engine == SLOW and slow and slow < len(images):
            mine = images[:slow]
            if image_range:
                first = int(image_range.split("-")[0])
                mine_range = f"{first}-{first + slow - 1}"
        log(f"images: {label} on {len(mine)} images ({out.name})")
        pred, stats = run_engine(label, engine, setting, mine, out, threads)
        if "error" in stats:
            results[label] = {"error": stats["error"]}
            continue
        results[label] = {"engine": engine, "setting": setting, "images": len(mine),
                          **evaluate(gt, pred, mine_range), "stats": stats}
        if len(mine) < len(images) and "clipspot" in results and image_range:
            ours = out / "clipspot.jsonl"
            results[label]["clipspot_same_images"] = evaluate(gt, ours, mine_range)
    return results


def choose_tunings(tune_count: int, out: Path, threads: int, slow: int | None
                   ) -> dict[str, Any]:
    """Per peer: tuneA vs tuneB on IC15 img_801..; the better E2E hmean (then det) wins."""
    images, gt, image_range = image_set("tune", 801, tune_count)
    arms = [(f"{p}_{c}", p, c) for p in PEERS for c in ("tuneA", "tuneB")]
    scored = score_set(arms, images, gt, image_range, out / "tune", threads, slow)
    chosen = {}
    for peer in PEERS:
        candidates = {c: scored[f"{peer}_{c}"] for c in ("tuneA", "tuneB")
                      if "error" not in scored[f"{peer}_{c}"]}
        chosen[peer] = max(candidates, default="tuneA", key=lambda c: (
            candidates[c]["end_to_end"]["hmean"], candidates[c]["detection"]["hmean"]))
    return {"images": image_range, "scores": scored, "chosen": chosen}


def run(out: Path, val_count: int, tune_count: int, synth_count: int, threads: int = 2,
        slow: int | None = None) -> dict[str, Any]:
    """The image part of the report: tuning, IC15 validation, synthetic images."""
    out.mkdir(parents=True, exist_ok=True)
    arms = [("clipspot", "clipspot", "default")]
    tuning: dict[str, Any] = {}
    if peers_available():
        tuning = choose_tunings(tune_count, out, threads, slow)
        for peer in PEERS:
            arms += [(f"{peer}_default", peer, "default"),
                     (f"{peer}_tuned", peer, tuning["chosen"][peer])]
        arms += [("rapidocr_words", "rapidocr", "default+words"),
                 ("rapidocr_tuned_words", "rapidocr", tuning["chosen"]["rapidocr"] + "+words")]
    else:
        log("images: ClipSpot only (peers off, or no .venv-peers: bash bench/peers/setup.sh)")
    images, gt, image_range = image_set("val", 901, val_count)
    val = score_set(arms, images, gt, image_range, out / "val", threads, slow)
    images, gt, synth_range = synthetic_set(out, synth_count)
    synth = score_set(arms, images, gt, synth_range, out / "synth", threads, slow)
    return {"val": {"images": image_range, "results": val},
            "synth": {"images": len(images), "results": synth}, "tuning": tuning}
