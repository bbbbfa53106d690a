"""`clipspot bench`: ClipSpot against the OCR engines users would pick instead (bench/).

    clipspot bench --quick                  # < 10 min once `bash bench/peers/setup.sh` ran
    clipspot bench [--out out/bench] [--docs docs] [--parts image,video,service,model,tcm]

Writes out/bench/results.json, then the report (benchmarks.md and img/bench_*.png) from it, and
prints the headline ratios. Only the full run writes the committed report in docs/ by default;
--quick writes its report beside its results (OUT/report/), so it never replaces the full one.
The harness lives in the repository's bench/ folder (a checkout, not the installed wheel); the
peers run in their own virtual environment, .venv-peers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import ClipSpotError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="small caps: a few images and frames per engine, 2 repeats")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # the test's
    parser.add_argument("--out", type=Path, default=Path("out/bench"), help="JSON results")
    parser.add_argument("--docs", type=Path, default=None,
                        help="where benchmarks.md and img/ go (default: docs for the full run, "
                             "OUT/report for --quick)")
    parser.add_argument("--no-report", action="store_true", help="JSON only, no docs")
    parser.add_argument("--parts", default="image,video,service,model,tcm",
                        help="comma-separated subset of image,video,service,model,tcm")
    parser.add_argument("--no-ray", action="store_true", help="service load: embedded only")
    parser.add_argument("--no-peers", action="store_true", help="ClipSpot alone")


def run(args: argparse.Namespace) -> int:
    try:
        from bench import run as harness
    except ImportError as err:
        raise ClipSpotError(f"the bench/ harness is not importable ({err}): run `clipspot "
                            "bench` from a checkout of the repository") from None
    preset = "smoke" if args.smoke else "quick" if args.quick else "full"
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    default_docs = Path("docs") if preset == "full" else args.out / "report"
    docs = None if args.no_report else args.docs or default_docs
    return harness.main(preset, args.out, docs, parts, ray=not args.no_ray,
                        peers=not args.no_peers)
