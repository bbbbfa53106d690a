"""`clipspot` entry point: parse the subcommand, run it, turn user errors into one line.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`.
Modules are imported only when their subcommand runs, so `clipspot synth` does not pay for
importing Ray. The CLI lives under `services` (not `pipeline`) because `serve` and `stream` need
gRPC, which the pure library must never import.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pipeline.errors import ClipSpotError

# subcommand -> (module, one-line help). The table of contents of the CLI.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "spot": ("services.cli.spot", "read the text in an image, folder, video file or stream URL"),
    "serve": ("services.cli.serve", "run the gRPC service (embedded, or on Ray Serve with --ray)"),
    "stream": ("services.cli.stream", "send a video to a running service and print its results"),
    "synth": ("services.cli.synth", "render synthetic images or videos with exact ground truth"),
    "eval": ("services.cli.evaluate", "score predictions against ground truth (ICDAR rules)"),
    "train": ("services.cli.train", "train the detector or the recognizer (resumable)"),
    "export": ("services.cli.export", "pack trained detector + recognizer into one weights file"),
    "calibrate": ("services.cli.calibrate", "fit each reader's word scores on the tune split"),
    "bench": ("services.cli.bench", "benchmark ClipSpot against peer OCR engines (bench/)"),
    "view": ("services.cli.view", "write (or serve) an HTML page playing a video with its results"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipspot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # Two-step parse: find the subcommand, then let its module add its own arguments.
    known, _ = parser.parse_known_args(argv[:1] if argv and not argv[0].startswith("-") else argv)
    module = importlib.import_module(known._module)
    sub_parser = parser._subparsers._group_actions[0].choices[known.command]  # type: ignore[union-attr]
    module.add_arguments(sub_parser)
    args = parser.parse_args(argv)
    try:
        return int(module.run(args) or 0)
    except ClipSpotError as err:
        print(f"clipspot {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clipspot {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `clipspot spot video.mp4 | head` closes stdout early: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:
        # A full disk (ENOSPC), a read-only or forbidden output path: where it happened and
        # why, in one line (what was written before it stays written).
        where = f"{err.filename}: " if err.filename else ""
        print(f"clipspot {args.command}: error: {where}cannot write or read "
              f"({err.strerror or err})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
