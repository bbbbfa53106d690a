"""The one batcher (pipeline/batcher.py): a frame's words never depend on its batch partners.

The detector pads a batch to its largest image, and that changes a smaller image's result
(measured here on real IC15 images). So the batcher only puts same-size, same-prompt frames in
one call; these tests prove a frame's detections are the same alone or batched with others,
through the async Batcher every service uses and through `spot_images` (`clipspot spot`).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from shared_data import SHARED_DATA

from pipeline.batcher import Batcher, same_size_groups
from pipeline.decode import decode_image_bytes
from pipeline.runner import spot_images
from pipeline.spotter import Spotter


@pytest.fixture(scope="module")
def spotter() -> Spotter:
    return Spotter.load(max_side=1280)


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    def load(name: str) -> np.ndarray:
        path = SHARED_DATA / "ic15_train" / "images" / name
        return decode_image_bytes(path.read_bytes())

    small = load("img_801.jpg")[:500, :900].copy()  # tune split only
    return {"small": small, "small_again": load("img_803.jpg")[:500, :900].copy(),
            "large": load("img_802.jpg")}


def _same(a: list, b: list) -> bool:
    pairs = zip(a, b, strict=False)
    return len(a) == len(b) and all(
        np.array_equal(x.polygon, y.polygon) and x.score == y.score for x, y in pairs)


def test_padding_would_change_a_smaller_frame_so_the_batcher_never_pads(spotter, images) -> None:
    small, large = images["small"], images["large"]
    alone = spotter.detect([small])[0]
    padded = spotter.detect([small, large])[0]
    # What the batcher exists for: padded to the large frame, the small frame's boxes change.
    assert not _same(alone, padded)

    async def both() -> list:
        with ThreadPoolExecutor(max_workers=1) as model_thread:
            batcher = Batcher(lambda _key, group: spotter.detect(group), model_thread, 8)
            results = await asyncio.gather(*(
                batcher.submit(("default", image.shape), image) for image in (small, large)))
            await batcher.close()
            return [results, batcher.sizes]

    (got_small, got_large), sizes = asyncio.run(both())
    assert _same(got_small, alone)
    assert _same(got_large, spotter.detect([large])[0])
    assert sizes == {1: 2}  # two frame sizes: two calls


def test_same_size_frames_share_one_call_and_keep_their_words(spotter, images) -> None:
    frames = [images["small"], images["large"], images["small_again"]]
    assert same_size_groups(frames) == [[0, 2], [1]]
    assert same_size_groups(frames, prompts=["a", None, None]) == [[0], [1], [2]]
    together = spot_images(spotter, frames)
    for frame, words in zip(frames, together, strict=True):
        (alone,) = spotter.spot([frame])
        assert [w.text for w in words] == [w.text for w in alone]
        for got, want in zip(words, alone, strict=True):
            assert np.abs(got.polygon - want.polygon).max() <= 1.0
            assert abs(got.score - want.score) <= 1e-4
