"""Train the FastTCM detector: resumable, warm-startable, CPU or CUDA (+AMP).

Checkpoints go to `out_dir/last.pt` (every `save_every` steps; resumed automatically) and
`out_dir/best.pt` (best detection hmean on the IC15 tune images img_801..img_900, scored with the
project's own ICDAR2015 scorer). `init_from` warm-starts from a packed weights file or a
detector training checkpoint; `clip_weights` loads a real OpenAI RN50 into `cr50_full`.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.data.readers import icdar_gt_path, read_icdar_gt
from pipeline.data.splits import ic15_images
from pipeline.eval.image_protocol import evaluate_images
from pipeline.model.checkpoint import build_detector, detector_config_to_dict, read_checkpoint
from pipeline.model.detect import detect_words
from pipeline.model.detector import DetectorOutput, FastTCMDetector
from pipeline.model.heads import HeadOutput
from pipeline.model.losses import DetectionTargets, LossConfig, detection_loss
from pipeline.model.variants import VARIANTS
from pipeline.train.detection_data import AugmentConfig, DetectionDataset
from pipeline.types import TextInstance


@dataclass(frozen=True)
class DetectorTrainConfig:
    ic15_root: str = "../shared/data/ic15_train"
    out_dir: str = "runs/det"
    variant: str = "cr50_cpu"
    steps: int = 20000
    batch_size: int = 8
    crop: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-4
    backbone_lr_mult: float = 1.0  # 0.1 with real CLIP weights (reference recipe); 1.0 from scratch
    warmup_steps: int = 200
    synth_fraction: float = 0.0
    threads: int = 2
    workers: int = 1
    device: str = "auto"
    init_from: str | None = None
    clip_weights: str | None = None
    val_every: int = 500
    val_images: int = 100
    save_every: int = 100
    seed: int = 0
    train_images: int | None = None  # few-shot: this many of img_1-800, evenly spread
    max_minutes: float | None = None  # stop (validate, save) after this long: a leased GPU


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _initial_model(cfg: DetectorTrainConfig) -> FastTCMDetector:
    if cfg.init_from:
        ckpt = read_checkpoint(cfg.init_from)
        det = ckpt.get("detector", ckpt)  # packed weights or a training checkpoint
        return build_detector(det["config"], det.get("state_dict", det.get("model")), cfg.init_from)
    model = FastTCMDetector(VARIANTS[cfg.variant]())
    if cfg.clip_weights:
        from pipeline.model.clip_weights import load_clip_into_detector

        print(load_clip_into_detector(model, cfg.clip_weights), file=sys.stderr)
    return model


def _optimizer(model: FastTCMDetector, cfg: DetectorTrainConfig) -> torch.optim.Optimizer:
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue  # the frozen text encoder
        lr = cfg.lr * (cfg.backbone_lr_mult if name.startswith("backbone.") else 1.0)
        decay = 0.0 if param.ndim <= 1 else cfg.weight_decay  # no decay on norms, biases, gammas
        groups.setdefault((lr, decay), []).append(param)
    return torch.optim.AdamW(
        [
            {"params": p, "lr": lr, "initial_lr": lr, "weight_decay": wd}
            for (lr, wd), p in groups.items()
        ]
    )


def _lr_factor(step: int, cfg: DetectorTrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    return max((1 - step / cfg.steps), 0.0) ** 0.9  # poly schedule, power 0.9 (reference)


def validate(model: FastTCMDetector, cfg: DetectorTrainConfig, split: str = "tune"
             ) -> dict[str, Any]:
    """Detection P/R/H on IC15 images at their native 960x640, default thresholds. Training
    selects on "tune" (img_801-900); "val" is for scoring a finished run once."""
    model.eval()
    paths = ic15_images(cfg.ic15_root, split)[: cfg.val_images]
    gt, preds = {}, {}
    text = model.text_embedding().detach()
    for path in paths:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        detections = detect_words(model, [rgb], text, max_side=960)[0]
        gt[path.name] = read_icdar_gt(icdar_gt_path(path))
        preds[path.name] = [TextInstance(d.polygon, "", d.score) for d in detections]
    model.train()
    return evaluate_images(gt, preds)["detection"]


def _save(path: Path, model, optimizer, step: int, best: float, cfg: DetectorTrainConfig) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "kind": "detector",
            "config": detector_config_to_dict(model.config),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "best_hmean": best,
            "train_config": asdict(cfg),
        },
        tmp,
    )
    tmp.replace(path)  # atomic: a kill mid-save never leaves a truncated last.pt


def train_detector(cfg: DetectorTrainConfig) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = _initial_model(cfg).to(device)
    optimizer = _optimizer(model, cfg)
    step, best = 0, -1.0
    if (out / "last.pt").exists():
        state = torch.load(out / "last.pt", map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, best = state["step"], state["best_hmean"]
        print(f"resumed from {out / 'last.pt'} at step {step}", file=sys.stderr)
    data = DetectionDataset(
        cfg.ic15_root,
        AugmentConfig(crop=cfg.crop),
        cfg.synth_fraction,
        cfg.seed,
        train_images=cfg.train_images,
    )
    loader = DataLoader(
        torch.utils.data.Subset(
            data, range(step * cfg.batch_size, (cfg.steps + 1) * cfg.batch_size)
        ),
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
    )
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_cfg = LossConfig()
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="detector", file=sys.stderr, dynamic_ncols=True)
    started = time.time()
    for batch in loader:
        if step >= cfg.steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * _lr_factor(step, cfg)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device.type, enabled=use_amp):
            output = model(batch["image"])
        targets = DetectionTargets(
            batch["shrink"], batch["shrink_mask"], batch["thresh"], batch["thresh_mask"]
        )
        losses = detection_loss(_float_output(output), targets, loss_cfg)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
        scaler.step(optimizer)
        scaler.update()
        step += 1
        bar.update(1)
        bar.set_postfix({k: f"{v.item():.3f}" for k, v in losses.items()})
        if not math.isfinite(losses["total"].item()):
            raise RuntimeError(f"loss became {losses['total'].item()} at step {step}")
        out_of_time = cfg.max_minutes is not None and time.time() - started > 60 * cfg.max_minutes
        last = step == cfg.steps or out_of_time
        if step % cfg.val_every == 0 or last:
            metrics = validate(model, cfg)
            tqdm.write(f"step {step} val detection {metrics}", file=sys.stderr)
            # every validated step is kept: validation is noisy, so later selection or
            # checkpoint averaging needs more than the single best
            _save(out / f"step_{step}.pt", model, optimizer, step, best, cfg)
            if metrics["hmean"] > best:
                best = metrics["hmean"]
                _save(out / "best.pt", model, optimizer, step, best, cfg)
        if step % cfg.save_every == 0 or last:
            _save(out / "last.pt", model, optimizer, step, best, cfg)
        if out_of_time:
            break
    bar.close()
    return {"step": step, "best_hmean": best, "seconds": time.time() - started}


def _float_output(output):
    """Losses in fp32 even under AMP (BCE on fp16 probabilities is unsafe)."""
    head = output.head
    return DetectorOutput(
        HeadOutput(head.prob.float(), head.thresh.float(), head.binary.float()),
        None if output.score_map is None else output.score_map.float(),
    )
