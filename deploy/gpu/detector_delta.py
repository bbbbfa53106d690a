"""Move a detector trained on a leased GPU back under the 16 MiB a device file may have.

    python3 deploy/gpu/detector_delta.py extract runs/gpu/best.pt weights/clipspot-default.pt \\
        $OUT/detector_delta.pt                                  # on the device
    .venv/bin/python deploy/gpu/detector_delta.py merge /work/.device/.../detector_delta.pt \\
        weights/clipspot-default.pt runs/gpu                    # here: detector.pt + recognizer.pt

`extract` keeps, in fp16, only the tensors that training changed (the frozen text tower's token
table alone is 6.3 M values and is left out); `merge` puts them back into the detector of the
weights file trained from, writing a detector training checkpoint (`runs/gpu/detector.pt`) and
the weights file's recognizer (`runs/gpu/recognizer.pt`) for `clipspot export`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.model.checkpoint import read_checkpoint


def extract(trained: Path, base: Path, out: Path) -> None:
    ckpt = torch.load(trained, map_location="cpu", weights_only=False)
    before = read_checkpoint(base)["detector"]["state_dict"]
    changed = {
        k: v.half() if v.is_floating_point() else v
        for k, v in ckpt["model"].items()
        if k not in before or not torch.equal(v.to(before[k].dtype), before[k])
    }
    meta = {k: ckpt.get(k) for k in ("config", "step", "best_hmean", "train_config")}
    torch.save({"kind": "detector_delta", **meta, "changed": changed}, out)
    print(f"{out}: {len(changed)} of {len(ckpt['model'])} tensors, step {ckpt.get('step')}, "
          f"best tune hmean {ckpt.get('best_hmean')}")


def merge(delta_path: Path, base: Path, out_dir: Path) -> None:
    delta = torch.load(delta_path, map_location="cpu", weights_only=False)
    data = read_checkpoint(base)
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in data["detector"]["state_dict"].items()}
    state.update({k: v.float() if v.is_floating_point() else v
                  for k, v in delta["changed"].items()})
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": "detector", "config": delta["config"], "model": state,
                "step": delta["step"], "best_hmean": delta["best_hmean"]},
               out_dir / "detector.pt")
    torch.save(data["recognizer"], out_dir / "recognizer.pt")
    print(f"{out_dir}/detector.pt and recognizer.pt: export with `clipspot export`")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("extract", "merge"))
    parser.add_argument("source", type=Path)
    parser.add_argument("base", type=Path, help="the weights file training started from")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    (extract if args.action == "extract" else merge)(args.source, args.base, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
