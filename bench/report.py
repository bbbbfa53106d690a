"""The benchmark report: docs/benchmarks.md and docs/img/bench_*.png from out/bench's JSON.

    python bench/report.py out/bench/results.json docs      # tables (+ plots if matplotlib)
    .venv-peers/bin/python bench/report.py --plots out/bench/results.json docs/img

Standard library only, except the plots (matplotlib, which is not a product dependency: it
lives in .venv-peers, and `clipspot bench` draws with that interpreter when .venv lacks it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

PEERS_PYTHON = Path(__file__).resolve().parent.parent / ".venv-peers" / "bin" / "python"
PARTS = ("image", "video", "service", "model", "tcm")  # of a run, in order (`--parts`)
PLOTS = ("bench_accuracy_vs_fps.png", "bench_latency_cdf.png", "bench_rss.png")


def f3(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}"


def prh(s: dict[str, float]) -> str:
    return f"{s['precision']:.3f} / {s['recall']:.3f} / **{s['hmean']:.3f}**"


def image_table(section: dict[str, Any]) -> list[str]:
    lines = ["| engine (setting) | images | det P / R / H | E2E P / R / H | s / image "
             "| CPU s / image | peak RSS MB |", "|---|---:|---|---|---:|---:|---:|"]
    for label, r in section["results"].items():
        if "error" in r:
            lines.append(f"| {label} | failed: {r['error'][:80]} | | | | | |")
            continue
        s = r["stats"]
        lines.append(f"| {label} ({r['setting']}) | {r.get('images', '')} | "
                     f"{prh(r['detection'])} | {prh(r['end_to_end'])} | "
                     f"{s.get('s_per_image', 0):.2f} | {s.get('cpu_s_per_image', 0):.2f} | "
                     f"{s.get('peak_rss_mb', 0):.0f} |")
        if "clipspot_same_images" in r:
            same = r["clipspot_same_images"]
            lines.append(f"| ↳ clipspot on the same {r['images']} images | {r['images']} | "
                         f"{prh(same['detection'])} | {prh(same['end_to_end'])} | | | |")
    return lines


def tuning_lines(tuning: dict[str, Any]) -> list[str]:
    if not tuning:
        return ["(no peers: .venv-peers missing)"]
    lines = [f"Candidates scored on IC15 `img_{tuning['images'].replace('-', '`–`img_')}` "
             "(training images; never the validation ones); the better E2E hmean is kept.", "",
             "| peer candidate | det H | E2E H | chosen |", "|---|---:|---:|---|"]
    for label, r in tuning["scores"].items():
        if "error" in r:
            continue
        peer, cand = label.split("_", 1)
        mark = "yes" if tuning["chosen"].get(peer) == cand else ""
        lines.append(f"| {label} | {r['detection']['hmean']:.3f} | "
                     f"{r['end_to_end']['hmean']:.3f} | {mark} |")
    return lines


def video_tables(video: dict[str, Any]) -> list[str]:
    arms = video["arms"]
    lines = []
    for group, frames in video["frames"].items():
        lines += ["", f"**{group}** ({len(frames)} clip(s), {sum(frames)} frames)", "",
                  "| engine / mode | MOTA | MOTP | IDF1 | track E2E P / R / H | frames/s |",
                  "|---|---:|---:|---:|---|---:|"]
        for label, a in arms.items():
            if "error" in a:
                continue
            s = a["scores"][group]
            first = f" (first {a['first_frames']} frames a clip)" if "first_frames" in a else ""
            lines.append(f"| {label}{first} | {f3(s['mota'])} | {f3(s['motp'])} | "
                         f"{f3(s['idf1'])} | {prh(s['track_e2e'])} | "
                         f"{a['by_group'][group]['fps']:.2f} |")
            if "clipspot_adaptive_same_frames" in a:
                c = a["clipspot_adaptive_same_frames"][group]
                lines.append(f"| ↳ clipspot_adaptive on the same frames | {f3(c['mota'])} | "
                             f"{f3(c['motp'])} | {f3(c['idf1'])} | {prh(c['track_e2e'])} | |")
    lines += ["", "All clips together (speed):", "",
              "| engine / mode | frames/s median [min–max] | latency p50 / p99 ms | CPU s / frame "
              "| peak RSS MB | ClipSpot adaptive ÷ this, frames/s [min–max, repeats] |",
              "|---|---|---|---:|---:|---|"]
    for label, a in arms.items():
        if "error" in a:
            lines.append(f"| {label} | failed: {a['error'][:80]} | | | | |")
            continue
        fps, ratio = a["fps"], a.get("clipspot_adaptive_over_this_fps")
        r = (f"**{ratio['median']:.1f}×** [{ratio['min']:.1f}–{ratio['max']:.1f}, "
             f"{ratio['repeats']}]" if ratio else "")
        lines.append(f"| {label} | {fps['median']:.2f} [{fps['min']:.2f}–{fps['max']:.2f}] | "
                     f"{a['p50_ms']:.0f} / {a['p99_ms']:.0f} | {a['cpu_s_per_frame']:.3f} | "
                     f"{a['peak_rss_mb'] or 0:.0f} | {r} |")
    return lines


def service_table(service: dict[str, Any]) -> list[str]:
    lines = ["| server | streams | frames/s spotted | keyframes/s (detector) | latency p50 / p99 "
             "ms | dropped by policy | lost | peak RSS MB | errors |",
             "|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for server, rows in service["servers"].items():
        for r in rows:
            keyframes = r.get("keyframes_per_s")
            lines.append(f"| {server} | {r['streams']} | {r['fps_spotted']:.2f} | "
                         f"{'—' if keyframes is None else f'{keyframes:.2f}'} | "
                         f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} | {r['dropped']} | "
                         f"**{r['lost']}** | {r['peak_rss_mb']:.0f} | {len(r['errors'])} |")
    ratio = ", ".join(f"{k} stream(s) {v:.2f}" for k, v in service["ray_over_embedded_fps"].items())
    keyframes = ", ".join(f"{k} stream(s) {v:.2f}"
                          for k, v in service.get("ray_over_embedded_keyframes", {}).items())
    return [*lines, "", f"Ray ÷ embedded, frames/s spotted: {ratio or 'not measured'}; "
            f"keyframes/s: {keyframes or 'not measured'}."]


def speed_tables(model: dict[str, Any], tcm: dict[str, Any]) -> list[str]:
    lines = ["| detector variant | params M | input frame | threads | ms / frame | CPU ms |",
             "|---|---:|---|---:|---:|---:|"]
    for r in model["detectors"]:
        kind = "shipped" if r["trained"] else "random init"
        lines.append(f"| {r['variant']} ({kind}) | {r['params_m']:.1f} | {r['size']} | "
                     f"{r['threads']} | {r['ms']:.1f} | {r['cpu_ms']:.1f} |")
    lines += ["", "| word reader | threads | ms / word (10 in one call) | ms for one word |",
              "|---|---:|---:|---:|"]
    for r in model["readers"]:
        lines.append(f"| {r['reader']} | {r['threads']} | {r['ms_per_word_batched']:.1f} | "
                     f"{r['ms_one_word']:.1f} |")
    lines += ["", f"FastTCM vs TCM ({tcm['input']}, {tcm['threads']} threads, {tcm['rounds']} "
              f"interleaved rounds × median of {tcm['runs']}):", "",
              "| variant | text encoder | FastTCM ms | TCM ms | TCM slower by % median [min–max] |",
              "|---|---|---:|---:|---|"]
    for r in tcm["rows"]:
        g = r["tcm_slower_pct"]
        lines.append(f"| {r['variant']} | {r['text_encoder']} | {r['fasttcm_ms']:.1f} | "
                     f"{r['tcm_ms']:.1f} | {g['median']:.1f} [{g['min']:.1f}–{g['max']:.1f}] |")
    return lines


def best_peer(results: dict[str, Any], key: str) -> tuple[str, float]:
    peers = {k: v[key]["hmean"] for k, v in results.items()
             if k != "clipspot" and "error" not in v}
    return max(peers.items(), key=lambda kv: kv[1], default=("none", 0.0))


def ours_against(results: dict[str, Any], peer: str, key: str) -> float:
    """ClipSpot's hmean on the images `peer` saw (all of them, or the slow peer's subset)."""
    same = results.get(peer, {}).get("clipspot_same_images")
    if same:
        return same[key]["hmean"]
    ours = results.get("clipspot", {})
    return ours[key]["hmean"] if "error" not in ours else 0.0


def headlines(res: dict[str, Any]) -> list[str]:
    """The goal lines of issue 13, each with where we stand."""
    out = []
    if "image" in res:
        val = res["image"]["val"]["results"]
        for key, name in (("detection", "det"), ("end_to_end", "E2E")):
            peer, theirs = best_peer(val, key)
            ours = ours_against(val, peer, key)
            mark = ("no peer measured" if peer == "none" else
                    "ahead" if ours > theirs else "NOT ahead")
            out.append(f"IC15 val {name} hmean: ClipSpot {ours:.3f} vs best peer {peer} "
                       f"{theirs:.3f} ({mark})")
    if "video" in res:
        arms = res["video"]["arms"]
        group = next(iter(res["video"]["frames"]))
        ours = arms.get("clipspot_adaptive", {})
        if "scores" in ours:
            s = ours["scores"][group]
            out.append(f"video {group}: ClipSpot adaptive MOTA {s['mota']:.3f} / IDF1 "
                       f"{s['idf1']:.3f} / track E2E H {s['track_e2e']['hmean']:.3f}")
            for label, a in arms.items():
                if label.startswith("clipspot") or "scores" not in a:
                    continue
                p, r = a["scores"][group], a.get("clipspot_adaptive_over_this_fps", {})
                if "clipspot_adaptive_same_frames" in a:
                    c = a["clipspot_adaptive_same_frames"][group]
                    label += (f" (first {a['first_frames']} frames; ClipSpot there MOTA "
                              f"{c['mota']:.3f} / IDF1 {c['idf1']:.3f} / track E2E H "
                              f"{c['track_e2e']['hmean']:.3f})")
                spread = f"[{r.get('min', 0):.1f}–{r.get('max', 0):.1f}]"
                out.append(f"  vs {label}: MOTA {p['mota']:.3f} / IDF1 {p['idf1']:.3f} / track "
                           f"E2E H {p['track_e2e']['hmean']:.3f}; ClipSpot frames/s ÷ peer "
                           f"{r.get('median', 0):.1f}× {spread}")
    if "service" in res:
        s = res["service"]
        out.append(f"service: Ray ÷ embedded frames/s {s['ray_over_embedded_fps']}, keyframes/s "
                   f"{s.get('ray_over_embedded_keyframes', {})}; frames lost {s['lost_total']} "
                   "(goal 0)")
    if "tcm" in res:
        for r in res["tcm"]["rows"]:
            out.append(f"TCM slower than FastTCM ({r['variant']}): "
                       f"{r['tcm_slower_pct']['median']:.1f} % (paper: 48.5 %)")
    return out


def markdown(res: dict[str, Any], preamble: str) -> str:
    m = res["machine"]
    parts = [preamble.rstrip(), "", "## This run", "",
             f"- machine: {m['cpu']}, {m['cores']} cores, no GPU lent (CPU only); "
             f"Python {m['python']}; {m['time']}",
             f"- load average (1/5/15 min) at start {m['load_average']}, at end "
             f"{res.get('load_average_end')} (the machine was shared: wall times are inflated,"
             " ratios within one repeat are the figures to trust)",
             "- weights `5b6c5d313881` (`weights/clipspot-default.pt`), default reader "
             "`ppocrv6` (`Spotter.checksum` 5a52499b2e3a); 2 threads per engine",
             f"- command: `{res['command']}` ({res['wall_s'] / 60:.1f} min)",
             *[f"- parts {', '.join(r['parts'])} from a later run: `{r['command']}` "
               f"({r['wall_s'] / 60:.1f} min, {r['machine']['time']}, load average at start "
               f"{r['machine']['load_average']}, at end {r.get('load_average_end')})"
               for r in res.get("reruns", [])], "",
             "### Headlines", "", *[f"- {h}" for h in headlines(res)]]
    if "image" in res:
        img = res["image"]
        parts += ["", "## Images", "", f"### IC15 validation `img_{img['val']['images']}`", "",
                  *image_table(img["val"]), "",
                  f"### Synthetic images (`clipspot synth images --seed 13`, "
                  f"{img['synth']['images']} images)", "", *image_table(img["synth"]), "",
                  "### Peer tuning", "", *tuning_lines(img["tuning"])]
    if "video" in res:
        parts += ["", "## Video", "",
                  f"{res['video']['seconds']:g} s clips, {res['video']['repeats']} repeat(s); "
                  "peers per frame through ClipSpot's tracker.", *video_tables(res["video"])]
    if "service" in res:
        s = res["service"]
        parts += ["", "## Service load", "",
                  f"`{s['clip']}` ({s['frames_per_stream']} frames) per stream at 25 fps, drop "
                  f"policy `{s['drop_policy']}`, {s['threads']} torch threads, batch ≤ "
                  f"{s['max_batch']}.", "", *service_table(s)]
    if "model" in res and "tcm" in res:
        parts += ["", "## Model speed (CPU)", "", *speed_tables(res["model"], res["tcm"])]
    parts += ["", *[f"![{p}](img/{p})" for p in PLOTS if "video" in res], ""]
    return "\n".join(parts)


def plots(res: dict[str, Any], img: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img.mkdir(parents=True, exist_ok=True)
    arms = res["video"]["arms"]
    group = next(iter(res["video"]["frames"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, a in arms.items():
        if "scores" in a:
            ax.scatter(a["by_group"][group]["fps"], a["scores"][group]["track_e2e"]["hmean"])
            ax.annotate(label, (a["by_group"][group]["fps"],
                                a["scores"][group]["track_e2e"]["hmean"]), fontsize=8)
    ax.set(xscale="log", xlabel="frames/s (2 CPU threads, shared machine)",
           ylabel="track-level E2E hmean", title=f"accuracy vs speed: {group}")
    fig.tight_layout()
    fig.savefig(img / PLOTS[0], dpi=110)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, a in arms.items():
        lat = sorted(a.get("latency_ms_sample", []))
        if lat:
            ax.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], label=label)
    ax.set(xscale="log", xlabel="per-frame latency, ms", ylabel="fraction of frames",
           title="latency CDF (all clips)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(img / PLOTS[1], dpi=110)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for server, rows in res.get("service", {}).get("servers", {}).items():
        for r in rows:
            t, mb = zip(*r["rss_mb"], strict=True)
            ax.plot(t, mb, label=f"{server}, {r['streams']} streams")
    ax.set(xlabel="seconds into the run", ylabel="server RSS, MB", title="service memory")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(img / PLOTS[2], dpi=110)


def write(res: dict[str, Any], results_path: Path, docs: Path, peers_python: Path) -> None:
    """docs/benchmarks.md (its hand-written reading above the marker is kept) and the plots."""
    doc = docs / "benchmarks.md"
    marker = "<!-- generated by bench/report.py below this line -->"
    preamble = doc.read_text().split(marker)[0] if doc.exists() else "# Benchmarks\n\n"
    docs.mkdir(parents=True, exist_ok=True)
    doc.write_text(markdown(res, preamble.rstrip() + "\n\n" + marker + "\n"))
    if "video" not in res:
        return
    try:
        plots(res, docs / "img")
    except ImportError:  # matplotlib lives in .venv-peers only
        if peers_python.exists():
            subprocess.run([str(peers_python), __file__, "--plots", str(results_path),
                            str(docs / "img")], check=False)
        else:
            print("report: no matplotlib here and no .venv-peers: tables only", file=sys.stderr)


def merge_rerun(res: dict[str, Any], rerun: dict[str, Any], parts: tuple[str, ...]
                ) -> dict[str, Any]:
    """`res` with the parts a later, partial run measured (`clipspot bench --parts ...`)
    replacing its own; the report names that run. Ratios stay within one invocation: every
    part is measured whole in one run."""
    rerun_parts = [p for p in parts if p in rerun]
    merged = {**res, **{p: rerun[p] for p in rerun_parts}}
    merged["reruns"] = [*res.get("reruns", []), {
        "parts": rerun_parts, "command": rerun["command"], "wall_s": rerun["wall_s"],
        "machine": rerun["machine"], "load_average_end": rerun.get("load_average_end")}]
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("dest", type=Path, help="docs folder, or with --plots the image folder")
    parser.add_argument("--plots", action="store_true")
    parser.add_argument("--rerun", type=Path,
                        help="results.json of a later partial run: its parts replace these "
                             "(the merged file is written beside RESULTS as results_merged.json)")
    args = parser.parse_args(argv)
    res = json.loads(args.results.read_text())
    if args.rerun:
        res = merge_rerun(res, json.loads(args.rerun.read_text()), PARTS)
        args.results = args.results.with_name("results_merged.json")
        args.results.write_text(json.dumps(res, indent=1))
    if args.plots:
        plots(res, args.dest)
    else:
        write(res, args.results, args.dest, PEERS_PYTHON)
    return 0


if __name__ == "__main__":
    sys.exit(main())
