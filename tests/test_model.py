"""FastTCM-CR50 model: shapes and strides, the cached prompt path, weights, and a tiny overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu

from pipeline.data.synth_images import make_scene
from pipeline.errors import ClipSpotError
from pipeline.model.checkpoint import pack_weights
from pipeline.model.detector import FastTCMDetector
from pipeline.model.losses import DetectionTargets, LossConfig, detection_loss
from pipeline.model.preprocess import CLIP_MEAN, CLIP_STD, normalise
from pipeline.model.variants import cr50_tiny
from pipeline.spotter import Spotter
from pipeline.train.db_targets import make_targets


@pytest.fixture(scope="module")
def tiny() -> FastTCMDetector:
    torch.manual_seed(0)
    return FastTCMDetector(cr50_tiny()).eval()


def test_backbone_strides_and_output_shapes(tiny: FastTCMDetector) -> None:
    images = torch.randn(2, 3, 160, 224)
    features = tiny.backbone(images)
    strides = [160 // f.shape[-2] for f in features.features]
    assert strides == [4, 8, 16, 32]
    assert [f.shape[1] for f in features.features] == tiny.backbone.out_channels
    assert features.pixel_embeddings.shape == (2, 64, 5, 7)
    assert features.global_embedding.shape == (2, 64)
    out = tiny(images)
    assert out.head.prob.shape == (2, 1, 160, 224)
    assert out.score_map.shape == (2, 1, 5, 7)
    assert float(out.head.prob.min()) >= 0 and float(out.head.prob.max()) <= 1


def test_text_embedding_is_image_independent(tiny: FastTCMDetector) -> None:
    # FastTCM: the meta-query, not the image, feeds the prompt generator.
    a = tiny.text_embedding()
    b = tiny.text_embedding()
    torch.testing.assert_close(a, b)
    other = tiny.text_embedding("shop signs and street names")
    assert not torch.allclose(a, other)


def test_cached_prompt_embedding_matches_running_the_text_encoder(tmp_path, tiny) -> None:
    path = tmp_path / "w.pt"
    pack_weights(tiny, None, {}, CLIP_MEAN, CLIP_STD, path)
    spotter = Spotter.load(path)
    encoded = spotter.encode_prompt(spotter.default_prompt)
    np.testing.assert_allclose(encoded, spotter.default_embedding.numpy()[0], rtol=1e-5, atol=1e-6)
    # The full forward with the cached embedding equals the forward that runs the text encoder.
    images = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        cached = spotter.detector(images, spotter.default_embedding).head.prob
        live = spotter.detector(images, None).head.prob
    torch.testing.assert_close(cached, live, rtol=1e-4, atol=1e-5)


def test_spotter_rejects_bad_weights(tmp_path, tiny) -> None:
    good = tmp_path / "good.pt"
    pack_weights(tiny, None, {}, CLIP_MEAN, CLIP_STD, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(ClipSpotError, match="truncated or corrupt"):
        Spotter.load(truncated)
    wrong = torch.load(good, weights_only=True)
    wrong["detector"]["config"]["neck_channels"] = 48  # weights no longer fit the config
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(ClipSpotError, match="do not fit"):
        Spotter.load(tmp_path / "wrong.pt")
    with pytest.raises(ClipSpotError, match="not found"):
        Spotter.load(tmp_path / "missing.pt")


def _scene(seed: int) -> tuple[np.ndarray, list]:
    image, words = make_scene(np.random.default_rng(seed), 192, 128)
    return image, words


def test_tiny_overfit_learns_where_the_words_are() -> None:
    """Two synthetic scenes, a fixed 200 steps: the probability map ranks text pixels above
    background pixels.

    Asserted as a ranking (the map's ROC AUC over pixels), not as polygons after fixed DB
    thresholds: how far a from-scratch tiny model gets in 200 steps depends on the processor's
    floating-point results as much as on a seed, and thresholded recall flips between 0 and 1
    with it (issue 14: it passed only for the seed it was written with). Eight seeds here gave
    AUC 0.92-1.00 at step 200 and 0.85-1.00 at step 100; the shipped weights' polygons are tested
    end to end in test_spot_cli and test_export.
    """
    torch.manual_seed(0)
    model = FastTCMDetector(cr50_tiny())
    scenes = [_scene(s) for s in (11, 12)]
    batch = torch.stack([normalise(img, CLIP_MEAN, CLIP_STD) for img, _ in scenes])
    maps = [
        make_targets(128, 192, [w.polygon for w in ws], [w.dont_care for w in ws])
        for _, ws in scenes
    ]
    targets = DetectionTargets(
        *(
            torch.from_numpy(np.stack([m[k] for m in maps]))[:, None]
            for k in ("shrink", "shrink_mask", "thresh", "thresh_mask")
        )
    )
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0
    )
    model.train()
    losses = []
    for _ in range(200):
        loss = detection_loss(model(batch), targets, LossConfig())["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    with torch.inference_mode():
        prob = model.eval()(batch).head.prob.numpy()
    text = targets.shrink.numpy().astype(bool)
    auc = mannwhitneyu(prob[text], prob[~text]).statistic / (text.sum() * (~text).sum())
    assert auc > 0.85
