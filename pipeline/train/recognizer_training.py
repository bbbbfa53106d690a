"""Train the word recognizer with CTC: resumable, CPU-first, CUDA + AMP when available.

`train_recognizer(RecognizerTrainConfig(...))` writes `out_dir/last.pt` (model, optimizer,
step, RNG states: training resumes from it automatically) every `val_interval` steps and
`out_dir/best.pt` (the recognizer checkpoint with the best word accuracy on the tune split:
the words of IC15 img_801-900 and IIIT5K's tune lines; validation is scored once, elsewhere).
The learning rate is a pure function of the step (linear warm-up, cosine decay), so a resumed
run, even with a larger `steps`, continues the same schedule instead of restarting it.
"""

from __future__ import annotations

import math
import pickle
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.errors import ClipSpotError
from pipeline.model.charset import Charset
from pipeline.model.recognizer import (
    Recognizer,
    RecognizerConfig,
    greedy_decode,
    load_recognizer,
    recognizer_checkpoint,
)
from pipeline.train.word_data import (
    SynthFn,
    WordBatcher,
    load_word_shard,
    real_word_sets,
    rectified_word_samples,
    synth_renderer,
    val_batches,
)


@dataclass(frozen=True)
class RecognizerTrainConfig:
    ic15_words_root: str | None = "../shared/data/ic15_words_train"  # IC15 word crops (gt.txt)
    iiit5k_root: str | None = "../shared/data/iiit5k_train"  # IIIT5K crops (train.tags)
    ic15_images_root: str | None = None  # IC15 scene images: words rectified as spotting cuts them
    rectified_variants: int = 3  # cuts per scene word (annotation + detector-like boxes)
    synth_fonts_dir: str | None = None  # fonts to render synthetic crops with while training
    synth_backgrounds_dir: str | None = None  # photos behind synthetic text (None: procedural)
    synth_per_batch: int = 2  # new crops rendered per step into the synthetic pool
    synth_shards_dir: str | None = None  # pre-rendered synthetic .npz shards (re-scanned)
    synth_pool_size: int = 20000  # synthetic crops kept in memory (ring buffer)
    synth_fraction: float = 0.5  # share of each batch drawn from the synthetic pool
    out_dir: str = "runs/rec"
    steps: int = 20000  # total optimizer steps (a resumed run continues up to this)
    batch_size: int = 64
    lr: float = 1e-3  # peak AdamW learning rate
    weight_decay: float = 0.01
    warmup_steps: int = 300
    min_lr_fraction: float = 0.05  # cosine decays to lr * this
    grad_clip: float = 5.0
    threads: int = 1  # torch CPU threads
    device: str = "auto"  # "auto" (cuda if available), "cpu" or "cuda"
    resume: bool = True  # continue from out_dir/last.pt if it exists
    init_from: str | None = None  # warm-start weights from a recognizer checkpoint (.pt)
    val_interval: int = 500  # steps between validation + checkpoint
    seed: int = 0
    model: RecognizerConfig = field(default_factory=RecognizerConfig)


def learning_rate(cfg: RecognizerTrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    floor = cfg.min_lr_fraction
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def ctc_loss(logits: torch.Tensor, texts: list[str], charset: Charset) -> torch.Tensor:
    """Mean CTC loss per word; logits (N, T, C) any float dtype (computed in float32)."""
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (T, N, C)
    encoded = [charset.encode(t) for t in texts]
    targets = torch.tensor([i for e in encoded for i in e], dtype=torch.long)
    target_lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)
    input_lengths = torch.full((len(texts),), log_probs.shape[0], dtype=torch.long)
    return F.ctc_loss(
        log_probs,
        targets.to(logits.device),
        input_lengths,
        target_lengths,
        blank=0,
        reduction="mean",
        zero_infinity=True,
    )


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)


@torch.inference_mode()
def evaluate(model: Recognizer, batches: list, device: torch.device) -> dict[str, float]:
    """Word accuracy, case-insensitive (`acc`) and case-sensitive (`acc_cased`)."""
    model.eval()
    right = right_cased = total = 0
    for images, texts in batches:
        reads = greedy_decode(
            model(to_tensor(images, device)).float().softmax(-1).cpu().numpy(), model.charset
        )
        for (pred, _), truth in zip(reads, texts, strict=True):
            right += pred.lower() == truth.lower()
            right_cased += pred == truth
            total += 1
    model.train()
    return {"acc": right / max(total, 1), "acc_cased": right_cased / max(total, 1), "n": total}


def _synth_source(cfg: RecognizerTrainConfig, train_sets: dict, charset: Charset) -> SynthFn | None:
    if not cfg.synth_fonts_dir or cfg.synth_fraction <= 0 or cfg.synth_per_batch <= 0:
        return None
    lexicon = sorted({s.text for group in train_sets.values() for s in group})
    return synth_renderer(cfg.synth_fonts_dir, cfg.synth_backgrounds_dir, lexicon, charset)


def _load_new_shards(cfg: RecognizerTrainConfig, batcher: WordBatcher, seen: set[str]) -> None:
    """Add shards written since the last look (a renderer may run beside the training)."""
    if not cfg.synth_shards_dir or cfg.synth_fraction <= 0:
        return
    for path in sorted(Path(cfg.synth_shards_dir).glob("*.npz")):
        if path.name not in seen and not path.name.endswith(".tmp.npz"):
            seen.add(path.name)
            batcher.add_synthetic(load_word_shard(path))


def _device(cfg: RecognizerTrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def _read_checkpoint(path: str | Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ClipSpotError(f"{path}: cannot read checkpoint ({err})") from None


class _State:
    """Model, optimizer and RNGs, with save/restore of the resumable `last.pt`."""

    def __init__(self, cfg: RecognizerTrainConfig, device: torch.device, last: dict | None) -> None:
        self.cfg, self.device = cfg, device
        if last is not None:  # resuming: the run's own architecture, whatever cfg.model says
            self.model = load_recognizer(last).train()
        elif cfg.init_from:
            ckpt = _read_checkpoint(cfg.init_from)
            # A packed weights file (clipspot export) carries the recognizer under "recognizer".
            if isinstance(ckpt, dict) and isinstance(ckpt.get("recognizer"), dict):
                ckpt = ckpt["recognizer"]
            try:
                self.model = load_recognizer(ckpt).train()
            except ValueError as err:
                raise ClipSpotError(f"{cfg.init_from}: {err}") from None
        else:
            self.model = Recognizer(cfg.model)
        self.model.to(device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
        self.rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.step, self.best = 0, -1.0

    def save_last(self, path: Path, metrics: dict) -> None:
        ckpt = recognizer_checkpoint(self.model, self.step, metrics)
        ckpt.update(
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict(),
            numpy_rng=self.rng.bit_generator.state,
            torch_rng=torch.get_rng_state(),
            best=self.best,
            train_config=asdict(self.cfg),
        )
        tmp = path.with_suffix(".tmp")
        torch.save(ckpt, tmp)
        tmp.replace(path)  # never leave a truncated last.pt behind a crash

    def restore(self, ckpt: dict) -> None:
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.rng.bit_generator.state = ckpt["numpy_rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        self.step, self.best = ckpt["step"], ckpt.get("best", -1.0)


def _validate(state: _State, val_sets: dict, out: Path, log: list) -> dict:
    metrics = {
        name: evaluate(state.model, batches, state.device) for name, batches in val_sets.items()
    }
    flat = {f"{name}_{k}": v for name, m in metrics.items() for k, v in m.items()}
    score = flat.get("ic15_acc", next(iter(flat.values()), 0.0))
    if score > state.best:
        state.best = score
        torch.save(recognizer_checkpoint(state.model, state.step, flat), out / "best.pt")
    state.save_last(out / "last.pt", flat)
    log.append({"step": state.step, **flat})
    tqdm.write(
        f"step {state.step} "
        + " ".join(f"{k}={v:.4f}" for k, v in flat.items() if not k.endswith("_n")),
        file=sys.stderr,
    )
    return flat


def train_recognizer(cfg: RecognizerTrainConfig) -> dict:
    """Train (or continue training); returns {"step", "best_ic15_acc", "last": metrics}."""
    torch.set_num_threads(cfg.threads)
    cv2.setNumThreads(1)
    device = _device(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last = None
    if cfg.resume and (out / "last.pt").exists():
        last = _read_checkpoint(out / "last.pt")
    state = _State(cfg, device, last)
    if last is not None:
        state.restore(last)
        tqdm.write(f"resumed from {out / 'last.pt'} at step {state.step}", file=sys.stderr)
    model, charset = state.model, state.model.charset
    mcfg = model.config
    train_sets = real_word_sets(cfg.ic15_words_root, cfg.iiit5k_root, "train", charset)
    if cfg.ic15_images_root:
        train_sets["ic15_scenes"] = rectified_word_samples(
            cfg.ic15_images_root, "train", charset, cfg.rectified_variants, cfg.seed
        )
    batcher = WordBatcher(
        train_sets,
        charset,
        mcfg.height,
        mcfg.max_width,
        synth=_synth_source(cfg, train_sets, charset),
        synth_fraction=cfg.synth_fraction,
        synth_per_batch=cfg.synth_per_batch,
        pool_size=cfg.synth_pool_size,
    )
    shards_seen: set[str] = set()
    _load_new_shards(cfg, batcher, shards_seen)
    # Checkpoints are chosen on the tune split; validation is scored once, outside training.
    val_samples = real_word_sets(cfg.ic15_words_root, cfg.iiit5k_root, "tune", charset)
    if cfg.ic15_images_root:  # the tune images' words as spotting would cut them
        val_samples["ic15_scenes"] = rectified_word_samples(
            cfg.ic15_images_root, "tune", charset, variants=1
        )
    val_sets = {
        name: val_batches(samples, mcfg.height, mcfg.max_width)
        for name, samples in val_samples.items()
    }
    log: list[dict] = []
    metrics: dict = {}
    amp = device.type == "cuda"
    bar = tqdm(
        total=cfg.steps, initial=state.step, file=sys.stderr, mininterval=20, desc="recognizer"
    )
    model.train()
    smoothed, started = None, time.perf_counter()
    while state.step < cfg.steps:
        images, texts = batcher.batch(state.rng, cfg.batch_size)
        for group in state.optimizer.param_groups:
            group["lr"] = learning_rate(cfg, state.step)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model(to_tensor(images, device))
        loss = ctc_loss(logits, texts, charset)
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        state.step += 1
        smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(
            loss=f"{smoothed:.3f}", lr=f"{learning_rate(cfg, state.step):.2e}", refresh=False
        )
        if state.step % cfg.val_interval == 0 or state.step == cfg.steps:
            metrics = _validate(state, val_sets, out, log)
            _load_new_shards(cfg, batcher, shards_seen)
    bar.close()
    return {
        "step": state.step,
        "best_ic15_acc": state.best,
        "last": metrics,
        "log": log,
        "seconds": time.perf_counter() - started,
    }
