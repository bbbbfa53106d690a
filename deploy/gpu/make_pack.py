"""Build the carried folder for a leased-GPU detector run: `.gpu/` (git-ignored, not committed).

    .venv/bin/python deploy/gpu/make_pack.py          # then: the device `run` in README.md

- `.gpu/data/ic15_train/{images,gt}`: IC15 img_1-img_900 (train img_1-800; tune img_801-900,
  on which training validates and picks `best.pt`), JPEG re-encoded at the highest quality
  (50, 45, ... 25) at which pack + wheels + the tracked repository (the shipped weights are
  22.6 MB of it) stay under 62 MiB of the device tool's 64; never the validation images.
- `.gpu/wheels/`: the packages the detector's training imports that the device image lacks
  (Python 3.12 wheels; the image has torch, torchvision, timm, numpy, scipy, opencv).
Refuses a data pack over 50 MiB (the reading issue's bound).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / ".gpu"
# The versions this repository's .venv holds (pip show), as wheels for the device's Python 3.12.
WHEELS = ["open_clip_torch==3.3.0", "ftfy==6.3.1", "wcwidth==0.9.4", "pyclipper==1.4.0",
          "shapely==2.2.0"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
LIMIT_MIB = 50
TOTAL_MIB = 62  # of the 64 MiB a device call may carry, with a little room to spare
QUALITIES = (50, 45, 40, 35, 30, 25)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ic15", type=Path, default=ROOT.parent / "shared/data/ic15_train")
    parser.add_argument("--last-image", type=int, default=900, help="never above 900")
    args = parser.parse_args(argv)
    if args.last_image > 900:
        raise SystemExit("make_pack: images above 900 are validation; they never travel")
    _exclude_from_git()
    _wheels()
    room = TOTAL_MIB - _mib(PACK / "wheels") - _tracked_mib()
    for quality in QUALITIES:
        data = _images(args.ic15, args.last_image, quality)
        size = _mib(data)
        if size <= min(room, LIMIT_MIB):
            print(f"{PACK}: data {size:.1f} MiB ({args.last_image} images, JPEG quality "
                  f"{quality}), wheels {_mib(PACK / 'wheels'):.1f} MiB, room was {room:.1f} MiB")
            return 0
    raise SystemExit(f"make_pack: even at quality {QUALITIES[-1]} the pack is {size:.1f} MiB")


def _images(ic15: Path, last: int, quality: int) -> Path:
    data = PACK / "data" / "ic15_train"
    shutil.rmtree(PACK / "data", ignore_errors=True)
    (data / "images").mkdir(parents=True)
    (data / "gt").mkdir()
    for n in range(1, last + 1):
        image = cv2.imread(str(ic15 / "images" / f"img_{n}.jpg"))
        cv2.imwrite(str(data / "images" / f"img_{n}.jpg"), image,
                    [cv2.IMWRITE_JPEG_QUALITY, quality])
        shutil.copy(ic15 / "gt" / f"gt_img_{n}.txt", data / "gt")
    return data


def _mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def _tracked_mib() -> float:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    return sum((ROOT / n).stat().st_size for n in names if n and (ROOT / n).is_file()) / 2**20


def _exclude_from_git() -> None:
    exclude = ROOT / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    if not exclude.is_file() or "/.gpu/" not in exclude.read_text():
        with open(exclude, "a") as f:
            f.write("/.gpu/\n")


def _wheels() -> None:
    target = PACK / "wheels"
    shutil.rmtree(target, ignore_errors=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    for wheel in WHEELS:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.12", "--implementation", "cp", *platforms, "-d",
             str(target), wheel],
            check=True,
        )


if __name__ == "__main__":
    raise SystemExit(main())
