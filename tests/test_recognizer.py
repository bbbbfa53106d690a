"""Word recognizer: charset, model shapes, checkpoints, rectification and a tiny overfit.

Everything runs on real data from ../shared/data (IC15 images and crops, IIIT5K crops).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from shared_data import SHARED_DATA

from pipeline.data.readers import icdar_gt_path, read_icdar_gt
from pipeline.data.splits import ic15_words, iiit5k_words
from pipeline.errors import ClipSpotError
from pipeline.eval.polygons import iou, to_shape
from pipeline.model.charset import Charset
from pipeline.model.recognizer import (
    Recognizer,
    RecognizerConfig,
    load_recognizer,
    recognizer_checkpoint,
)
from pipeline.model.rectify import rectify_word
from pipeline.model.word_reader import OwnCTCReader, read_words
from pipeline.track.matching import edit_distance
from pipeline.train.recognizer_training import (
    RecognizerTrainConfig,
    ctc_loss,
    train_recognizer,
)
from pipeline.train.word_data import (
    AugmentConfig,
    WordBatcher,
    augment,
    detector_like_quads,
    load_crop,
    load_word_shard,
    rectified_word_samples,
    save_word_shard,
    to_sample,
)

DATA = SHARED_DATA
IC15_WORDS = DATA / "ic15_words_train"
IIIT5K = DATA / "iiit5k_train"
IC15 = DATA / "ic15_train"
TINY = RecognizerConfig(stem_width=32, planes=(16, 32, 48, 64), blocks=(1, 1, 1, 1), hidden=64)

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on the shared 2-core machine, with other jobs running, two OpenMP
    threads spin-wait on each other and the tiny overfit took 130 s instead of 5 s."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_charset_round_trip_and_ctc_collapse() -> None:
    charset = Charset()
    for word in ["Genaxis", "62-03", "HI-TEC", "$4.99", "(Rescue)", "e-mail@x.com"]:
        ids = charset.encode(word, strict=True)
        assert 0 not in ids
        assert charset.decode(ids) == word
    assert charset.encode("a\u00e9b") == charset.encode("ab")  # unknown characters dropped
    with pytest.raises(ValueError, match="not in charset"):
        charset.encode("a\u00e9b", strict=True)
    a, b = charset.encode("ab")
    assert charset.ctc_collapse([0, a, a, 0, a, b, b, 0]) == [a, a, b]
    with pytest.raises(ValueError, match="duplicate"):
        Charset("abca")


def test_forward_shape_and_read() -> None:
    model = Recognizer(TINY).eval()
    cfg = model.config
    logits = model(torch.rand(3, 3, cfg.height, cfg.max_width))
    assert logits.shape == (3, cfg.max_width // 4, model.charset.num_classes)
    crops = [load_crop(c.path) for c in iiit5k_words(IIIT5K, "train")[:3]]
    crops.append(np.full((200, 20, 3), 255, np.uint8))  # tall, narrow: still one result
    reader = OwnCTCReader(model, "test")
    reads = read_words(reader, crops)
    assert len(reads) == 4
    assert all(isinstance(r.text, str) and 0.0 <= r.confidence <= 1.0 for r in reads)
    assert read_words(reader, []) == []


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = Recognizer(TINY).eval()
    path = tmp_path / "rec.pt"
    torch.save(recognizer_checkpoint(model, step=7, metrics={"acc": 0.5}), path)
    ckpt = torch.load(path, weights_only=True)
    loaded = load_recognizer(ckpt)
    assert ckpt["step"] == 7 and loaded.config == model.config
    x = torch.rand(2, 3, 32, 128)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), model(x))
    with pytest.raises(ValueError, match="not a recognizer"):
        load_recognizer({**ckpt, "kind": "detector"})


def _ic15_first_word() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """img_1, its first legible quad, and the matching IC15 word crop (word_1)."""
    image_path = DATA / "ic15_train" / "images" / "img_1.jpg"
    word = next(w for w in read_icdar_gt(icdar_gt_path(image_path)) if not w.dont_care)
    crop = ic15_words(IC15_WORDS, "train")[0]
    assert crop.text == word.text  # word_1 is img_1's first legible word
    return rgb(image_path), word.polygon, rgb(crop.path)


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
    return float(np.corrcoef(a.mean(-1).ravel(), b.mean(-1).ravel())[0, 1])


def test_rectify_matches_the_ic15_word_crop() -> None:
    image, quad, reference = _ic15_first_word()
    crop = rectify_word(image, quad, height=32)
    assert crop.shape[0] == 32 and crop.dtype == np.uint8
    assert abs(crop.shape[1] / 32 - reference.shape[1] / reference.shape[0]) < 1.0
    assert _similarity(crop, reference) > 0.8
    # Corner order and orientation do not matter; nor does a longer polygon around the word.
    for other in (quad[[2, 3, 0, 1]], quad[::-1]):
        assert np.abs(rectify_word(image, other).astype(int) - crop).mean() < 2
    edge_points = np.concatenate(
        [np.linspace(quad[i], quad[(i + 1) % 4], 4, endpoint=False) for i in range(4)]
    )
    assert _similarity(rectify_word(image, edge_points), reference) > 0.8


def test_rectify_turns_a_vertical_word_upright() -> None:
    image, quad, reference = _ic15_first_word()
    turned = np.ascontiguousarray(np.rot90(image, k=-1))  # clockwise: text reads downwards
    h = image.shape[0]
    turned_quad = np.stack([h - 1 - quad[:, 1], quad[:, 0]], axis=1)
    assert _similarity(rectify_word(turned, turned_quad), reference) > 0.8


def test_augment_keeps_a_readable_rgb_crop() -> None:
    crop = load_crop(iiit5k_words(IIIT5K, "train")[0].path)
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = augment(crop, rng, AugmentConfig())
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        assert 0.5 < out.shape[1] / crop.shape[1] < 2 and out.shape[0] >= 0.5 * crop.shape[0]


def test_scene_words_are_cut_like_spotting_cuts_them() -> None:
    charset = Charset()
    single = rectified_word_samples(IC15, "val", charset, variants=1)
    triple = rectified_word_samples(IC15, "val", charset, variants=3)
    val_words = [
        w
        for n in range(901, 1001)
        for w in read_icdar_gt(IC15 / "gt" / f"gt_img_{n}.txt")
        if not w.dont_care and charset.covers(w.text)
    ]
    assert [s.text for s in single] == [w.text for w in val_words]
    assert len(triple) == 3 * len(single)
    image = rgb(IC15 / "images" / "img_901.jpg")
    expected = rectify_word(image, val_words[0].polygon, height=single[0].image.shape[0])
    assert np.array_equal(single[0].image, expected)  # variant 0 is the annotation itself
    assert [s.text for s in triple[::3]] == [w.text for w in val_words]
    rng = np.random.default_rng(0)
    overlaps = []
    for word in val_words[:50]:  # detector-like boxes: the same word, cut a little differently
        quads = detector_like_quads(word.polygon, rng, variants=3)
        assert np.array_equal(quads[0], word.polygon) and len(quads) == 3
        overlaps += [iou(to_shape(q), to_shape(word.polygon)) for q in quads[1:]]
    # Rectangles around slanted quads overlap them less, but always mostly the same word.
    assert min(overlaps) > 0.3 and 0.6 < np.median(overlaps) < 0.98


def test_tiny_overfit_reads_the_words_back() -> None:
    """Four real words, a fixed number of steps well past convergence, then read them back.

    No early stop on a loss threshold and no exact-output assertion: floating-point results
    differ between processors and thread counts, so the step at which a threshold is crossed
    and the last unsure character differ too (issue 14). What must hold anywhere: the loss
    falls by a large factor and almost every character is read back.
    """
    torch.manual_seed(0)
    words = iiit5k_words(IIIT5K, "train")[:4]
    crops = [load_crop(w.path) for w in words]
    model = Recognizer(TINY)
    x = model.preprocess(crops)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(400):  # converges in 150-300 steps (5 seeds tried: at most 2 wrong characters)
        loss = ctc_loss(model(x), [w.text for w in words], model.charset)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.05 * losses[0]
    reads = [r.text for r in read_words(OwnCTCReader(model.eval(), "test"), crops)]
    errors = sum(edit_distance(r, w.text) for r, w in zip(reads, words, strict=True))
    characters = sum(len(w.text) for w in words)
    assert errors / characters <= 0.2, (reads, [w.text for w in words])


def test_train_recognizer_checkpoints_and_resumes(tmp_path: Path) -> None:
    cfg = RecognizerTrainConfig(
        ic15_words_root=str(IC15_WORDS),
        iiit5k_root=str(IIIT5K),
        ic15_images_root=str(IC15),
        out_dir=str(tmp_path),
        steps=2,
        batch_size=4,
        val_interval=2,
        threads=1,
        device="cpu",
        model=TINY,
    )
    first = train_recognizer(cfg)
    assert first["step"] == 2 and {"ic15_acc", "iiit5k_acc_cased"} <= set(first["last"])
    assert first["last"]["ic15_scenes_n"] > 350  # the tune images' words, as spotted
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists()
    second = train_recognizer(replace(cfg, steps=3))
    assert second["step"] == 3  # continued from last.pt, not from scratch
    warm = train_recognizer(
        replace(
            cfg,
            out_dir=str(tmp_path / "warm"),
            resume=False,
            steps=1,
            init_from=str(tmp_path / "best.pt"),
            model=RecognizerConfig(),
        )
    )
    assert warm["step"] == 1  # the checkpoint's architecture wins over `model`
    best = load_recognizer(torch.load(tmp_path / "warm" / "best.pt", weights_only=True))
    assert best.config == TINY


def test_bad_checkpoints_give_one_clear_error(tmp_path: Path) -> None:
    good = tmp_path / "rec.pt"
    torch.save(recognizer_checkpoint(Recognizer(TINY), step=1, metrics={}), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    wrong = tmp_path / "wrong.pt"
    ckpt = torch.load(good, weights_only=True)
    ckpt["config"]["hidden"] = 32  # shapes no longer fit the state dict
    torch.save(ckpt, wrong)
    for path, reason in [(truncated, "cannot read checkpoint"), (wrong, "does not fit")]:
        cfg = RecognizerTrainConfig(
            ic15_words_root=None,
            iiit5k_root=str(IIIT5K),
            out_dir=str(tmp_path / "out"),
            steps=1,
            init_from=str(path),
            device="cpu",
        )
        with pytest.raises(ClipSpotError, match=reason) as err:
            train_recognizer(cfg)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_synthetic_shards_round_trip_into_the_batcher(tmp_path: Path) -> None:
    charset = Charset()
    real = [load_crop(w.path) for w in iiit5k_words(IIIT5K, "train")[:3]]
    samples = [
        to_sample(image, text) for image, text in zip(real, ["ab", "Cd", "e\u00e9"], strict=True)
    ]
    save_word_shard(tmp_path / "shard.npz", samples)
    loaded = load_word_shard(tmp_path / "shard.npz")
    assert [s.text for s in loaded] == ["ab", "Cd", "e\u00e9"]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(samples, loaded, strict=True))
    batcher = WordBatcher({}, charset, 32, 128, synth_fraction=1.0)
    batcher.add_synthetic(loaded)
    assert len(batcher.pool) == 2  # "e\u00e9" cannot be written with the charset
    images, texts = batcher.batch(np.random.default_rng(0), 8)
    assert images.shape == (8, 32, 128, 3) and set(texts) <= {"ab", "Cd"}
