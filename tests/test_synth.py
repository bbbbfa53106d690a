"""`clipspot synth`: exact, deterministic ground truth for synthetic images and videos."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from shared_data import SHARED_DATA

from pipeline.data import synth_images, synth_text
from pipeline.data.readers import DONT_CARE, read_icdar_gt
from pipeline.data.synth_video import VideoConfig, VideoScene
from pipeline.data.video_gt import read_video_gt
from pipeline.errors import ClipSpotError
from services.cli.main import main

SHARED_FONTS = SHARED_DATA / "synth_assets" / "fonts"
SMALL_VIDEO = ["--seconds", "2", "--fps", "10", "--width", "320", "--height", "180"]


def _clockwise(polygon: np.ndarray) -> bool:
    x, y = polygon[:, 0], polygon[:, 1]
    # Shoelace sum is positive for clockwise order in image coordinates (y points down).
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)) > 0


def _polygon_mask(shape: tuple[int, int], polygons: list[np.ndarray], grow: int = 0) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for polygon in polygons:
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return cv2.dilate(mask, np.ones((2 * grow + 1,) * 2, np.uint8)) if grow else mask


def _decode(path: Path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        return [f.to_ndarray(format="rgb24") for f in frames], [float(f.time) for f in frames]


@pytest.fixture(scope="module")
def fonts() -> tuple[synth_text.FontFace, ...]:
    return synth_text.find_fonts()


def test_caps_only_faces_are_detected_and_labelled_upper_case():
    if not SHARED_FONTS.is_dir():
        pytest.skip("shared font folder not present")
    faces = {f.path.name: f for f in synth_text.find_fonts(SHARED_FONTS)}
    assert faces["BEBAS___.ttf"].caps_only and faces["AmaticSC-Regular.ttf"].caps_only
    assert not faces["OpenSans-Regular.ttf"].caps_only
    assert "Lato-Hairline.ttf" not in faces  # too thin to read
    assert synth_text.label_for(faces["BEBAS___.ttf"], "Open") == "OPEN"


def test_scene_is_deterministic_for_a_seed(fonts):
    a_image, a_words = synth_images.make_scene(np.random.default_rng(7), 320, 240, fonts)
    b_image, b_words = synth_images.make_scene(np.random.default_rng(7), 320, 240, fonts)
    c_image, _ = synth_images.make_scene(np.random.default_rng(8), 320, 240, fonts)
    assert np.array_equal(a_image, b_image) and not np.array_equal(a_image, c_image)
    assert [w.text for w in a_words] == [w.text for w in b_words]
    for a, b in zip(a_words, b_words, strict=True):
        assert np.array_equal(a.polygon, b.polygon)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quads_lie_on_the_rendered_ink(fonts, seed):
    # A flat grey "photo" and no plates or photometric effects: every changed pixel is ink.
    flat = np.full((100, 100, 3), 128, np.uint8)
    config = synth_images.SceneConfig(plate_probability=0, illegible_probability=0, effects=False)
    image, words = synth_images.make_scene(np.random.default_rng(seed), 480, 320, fonts, [flat],
                                           config)
    assert words
    background = np.median(image.reshape(-1, 3), axis=0)
    ink = (np.abs(image.astype(np.int16) - background).max(axis=2) > 40).astype(np.uint8)
    inside = _polygon_mask(ink.shape, [w.polygon for w in words], grow=2)
    assert (ink & inside).sum() >= 0.95 * ink.sum()  # what lies outside is soft drop shadow
    for word in words:
        assert _clockwise(word.polygon)
        # Tight: seen in the quad's own frame, its ink reaches close to all four sides.
        width = float(np.linalg.norm(word.polygon[1] - word.polygon[0]))
        height = float(np.linalg.norm(word.polygon[3] - word.polygon[0]))
        box = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
        to_box = cv2.getPerspectiveTransform(word.polygon, box)
        own = _polygon_mask(ink.shape, [word.polygon]) & ink
        points = np.argwhere(own)[:, ::-1].astype(np.float32).reshape(-1, 1, 2)
        u, v = cv2.perspectiveTransform(points, to_box).reshape(-1, 2).T
        slack = 3 + 0.1 * height
        assert u.min() < slack and v.min() < slack, word.text
        assert u.max() > width - slack and v.max() > height - slack, word.text


def test_word_crop_keeps_the_requested_text(fonts):
    crop, text = synth_images.render_word_crop(np.random.default_rng(3), "Parking", fonts)
    assert text == "Parking" and crop.ndim == 3 and crop.dtype == np.uint8
    assert 10 < crop.shape[0] < crop.shape[1]
    _, random_text = synth_images.render_word_crop(np.random.default_rng(4), fonts=fonts)
    assert random_text.strip()


def test_images_cli_writes_parseable_deterministic_icdar(tmp_path):
    args = ["synth", "images", "--count", "4", "--seed", "5", "--width", "320", "--height", "240"]
    assert main([*args, "--out", str(tmp_path / "a"), "--render"]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    for number in range(1, 5):
        for name in (f"img_{number}.jpg", f"gt_img_{number}.txt"):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        words = read_icdar_gt(tmp_path / "a" / f"gt_img_{number}.txt")
        assert words and all(_clockwise(w.polygon) and w.text for w in words)
        assert (tmp_path / "a" / "render" / f"img_{number}.png").is_file()


def test_some_words_are_dont_care(fonts):
    texts = [w.text for seed in range(6)
             for w in synth_images.make_scene(np.random.default_rng(seed), 480, 320, fonts)[1]]
    assert DONT_CARE in texts and sum(t != DONT_CARE for t in texts) > 3 * texts.count(DONT_CARE)


def test_video_pts_and_frames_are_read_back_from_the_container(tmp_path):
    for folder in ("a", "b"):
        assert main(["synth", "video", *SMALL_VIDEO, "--seed", "3", "--name", "clip",
                     "--out", str(tmp_path / folder)]) == 0
    gt = read_video_gt(tmp_path / "a" / "clip.json")
    frames, times = _decode(tmp_path / "a" / gt.video)
    assert len(frames) == len(gt.frames) == 20
    assert [f.frame for f in gt.frames] == list(range(20))
    assert [f.pts for f in gt.frames] == pytest.approx(times, abs=1e-9)
    assert (gt.width, gt.height, gt.fps) == (320, 180, 10.0)
    for name in ("clip.json", "clip.mp4"):  # same seed, same bytes
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    seen = {o.track_id for f in gt.frames for o in f.objects}
    assert seen == set(gt.tracks)
    for frame in gt.frames:
        for obj in frame.objects:
            assert _clockwise(obj.polygon) and obj.text == gt.tracks[obj.track_id]
            lo, hi = obj.polygon.min(axis=0), obj.polygon.max(axis=0)
            assert (hi >= 0).all() and (lo <= [319, 179]).all()  # wholly outside -> left out


def test_ticker_text_moves_with_its_quads(tmp_path):
    assert main(["synth", "video", *SMALL_VIDEO, "--scenario", "ticker", "--seed", "1",
                 "--out", str(tmp_path)]) == 0
    gt = read_video_gt(tmp_path / "synth_1.json")
    frames, _ = _decode(tmp_path / gt.video)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.int16) for f in frames]
    checked = 0
    for i in range(len(gt.frames) - 1):
        now = {o.track_id: o for o in gt.frames[i].objects if not o.dont_care}
        later = {o.track_id: o for o in gt.frames[i + 1].objects if not o.dont_care}
        for track_id in now.keys() & later.keys():
            dx = later[track_id].polygon - now[track_id].polygon
            assert dx[:, 0].max() < 0 and np.allclose(dx, dx[0])  # leftwards, rigidly
            shift = round(float(-dx[0, 0]))
            x0, y0 = np.floor(now[track_id].polygon.min(axis=0)).astype(int)
            x1, y1 = np.ceil(now[track_id].polygon.max(axis=0)).astype(int)
            before = grey[i][y0:y1, x0:x1]
            moved = grey[i + 1][y0:y1, x0 - shift : x1 - shift]
            still = grey[i + 1][y0:y1, x0:x1]
            assert np.abs(before - moved).mean() < 0.5 * np.abs(before - still).mean()
            checked += 1
        # Ink in the band lies in the quads.
        band = grey[i][int(gt.height * 0.9) :]
        ink = np.abs(band - np.median(band)) > 60
        quads = _polygon_mask(grey[i].shape, [o.polygon for o in gt.frames[i].objects], grow=2)
        assert (ink & quads[int(gt.height * 0.9) :].astype(bool)).sum() >= 0.9 * ink.sum()
    assert checked > 10


def test_words_more_than_half_hidden_are_dont_care(fonts):
    base = dict(width=320, height=180, fps=5, seconds=8, seed=2)
    clear = VideoScene(VideoConfig(**base, scenarios=("pan",)), fonts)
    walked = VideoScene(VideoConfig(**base, scenarios=("pan", "occlusion")), fonts)
    hidden_seen = visible_seen = 0
    for index in range(0, 40):
        plain, _ = clear.render(index)
        frame, objects = walked.render(index)
        changed = (np.abs(frame.astype(np.int16) - plain).max(axis=2) > 20).astype(np.uint8)
        for obj in objects:
            inside = (obj.polygon >= 0).all() and (obj.polygon <= [319, 179]).all()
            if obj.text == DONT_CARE or not inside:
                continue
            area = _polygon_mask(changed.shape, [obj.polygon])
            fraction = (changed & area).sum() / area.sum()
            if obj.dont_care:
                assert fraction > 0.3
                hidden_seen += 1
            else:
                assert fraction < 0.6
                visible_seen += fraction > 0.05
    assert hidden_seen and visible_seen  # both sides of the rule were exercised


def test_video_gt_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text("{not json")
    with pytest.raises(ClipSpotError, match=r"gt\.json:1: not valid JSON"):
        read_video_gt(path)
    good = {"format": "clipspot-video-gt/1", "video": "v.mp4", "width": 8, "height": 8, "fps": 5,
            "frames": [{"frame": 0, "pts": 0.0, "objects": [
                {"track_id": 1, "polygon": [[0, 0], [4, 0], [4, 4]], "text": "A",
                 "dont_care": False}]}],
            "tracks": [{"track_id": 1, "text": "A"}]}
    path.write_text(json.dumps(good))
    with pytest.raises(ClipSpotError, match=r"frames\[0\]\.objects\[0\]\.polygon: expected 4"):
        read_video_gt(path)
    good["frames"][0]["objects"] = [{"track_id": 2, "polygon": [[0, 0]] * 4, "text": "A",
                                     "dont_care": False}]
    path.write_text(json.dumps(good))
    with pytest.raises(ClipSpotError, match="track 2 is not listed"):
        read_video_gt(path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["video", "--scenario", "ticker,rain"], "unknown scenario rain"),
        (["video", "--width", "321"], "needs even sizes"),
        (["images", "--count", "0"], "--count 0"),
        (["images", "--fonts", "EMPTY"], "no .ttf or .otf fonts"),
        (["images", "--backgrounds", "EMPTY"], "no .jpg/.png background images"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys, extra, message):
    (tmp_path / "empty").mkdir()
    extra = [str(tmp_path / "empty") if e == "EMPTY" else e for e in extra]
    assert main(["synth", *extra, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_synth_words_writes_shards_the_recognizer_training_reads(tmp_path: Path) -> None:
    from pipeline.model.charset import Charset
    from pipeline.train.word_data import STORE_HEIGHT, load_word_shard

    for name in ("a", "b"):
        args = ["synth", "words", "--out", str(tmp_path / name), "--count", "24", "--seed", "3"]
        if SHARED_DATA.is_dir():
            args += ["--labels-from", str(SHARED_DATA)]
        assert main(args) == 0
    shards = sorted((tmp_path / "a").glob("*.npz"))
    assert [p.name for p in shards] == ["shard_03_0000.npz"]
    samples = load_word_shard(shards[0])
    assert len(samples) == 24 and all(s.image.shape[0] == STORE_HEIGHT for s in samples)
    assert all(s.text and Charset().covers(s.text) for s in samples)
    again = load_word_shard(tmp_path / "b" / shards[0].name)  # same seed, same crops
    assert [s.text for s in again] == [s.text for s in samples]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(again, samples, strict=True))
