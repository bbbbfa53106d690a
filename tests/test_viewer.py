"""`clipspot view VIDEO RESULTS.jsonl`: the results viewer, checked in a real headless browser.

A 2 s synthetic clip is spotted by the real `clipspot spot` (shipped weights), the page is
built by `clipspot view`, and Debian's Chromium (driven by selenium through /usr/bin/chromedriver;
nothing is downloaded) opens it from file://. After seeking to a frame's pts, the screenshot of
the video must show that very frame (compared with PyAV's decode of the neighbouring frames) and
the overlay's pixels (the screenshot with the overlay on minus the one with it off) must lie on
that frame's polygons, in their track colours. Clicking a track in the side list must seek to
its first pts. An MPEG-TS copy (which Chromium cannot play) must be transcoded, linked and
served by `--serve`'s server. The CLI's one-line errors are checked without a browser.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.render import track_colour
from pipeline.stream_decode import remux_to_mpegts
from pipeline.viewer import build_page, render_page
from services.cli.main import main
from services.cli.view import make_server

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FPS = 25
# Wait for the seek, then two animation frames: by then the overlay of the new frame is drawn.
SEEK = """const [pts, done] = arguments; const video = document.getElementById('video');
video.addEventListener('seeked', () => requestAnimationFrame(() => requestAnimationFrame(
  () => done(Object.assign({currentTime: video.currentTime}, window.clipspotViewer)))),
  {once: true});
video.currentTime = pts;"""


@dataclass
class Clip:
    video: Path
    results: Path
    page: Path
    frames: list[dict]  # the JSON Lines, parsed
    pixels: list[np.ndarray]  # the video decoded by PyAV, RGB


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Clip:
    folder = tmp_path_factory.mktemp("viewer")
    assert main(["synth", "video", "--out", str(folder), "--seconds", "2", "--seed", "3",
                 "--fps", str(FPS), "--name", "clip"]) == 0
    video, results = folder / "clip.mp4", folder / "clip.jsonl"
    assert main(["spot", str(video), "--out", str(results), "--threads", "1"]) == 0
    assert main(["view", str(video), str(results)]) == 0  # default page: RESULTS.html
    frames = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    with av.open(str(video)) as container:
        pixels = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return Clip(video, results, results.with_suffix(".html"), frames, pixels)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (make system-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
                 "--force-device-scale-factor=1", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver, url: str) -> None:
    driver.get(url)
    deadline = time.monotonic() + 20
    while not driver.execute_script("return window.clipspotViewer.ready"):
        status = driver.find_element("id", "status").text
        assert "cannot play" not in status, status
        assert time.monotonic() < deadline, f"the video never loaded: {status}"
        time.sleep(0.05)


def screenshot_of_video(driver) -> np.ndarray:
    """The <video> element's box in a page screenshot, RGB, at screen resolution."""
    left, top, width, height = driver.execute_script(
        "const r = document.getElementById('video').getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height];")
    png = np.frombuffer(driver.get_screenshot_as_png(), np.uint8)
    page = cv2.imdecode(png, cv2.IMREAD_COLOR)[:, :, ::-1]
    return page[round(top):round(top + height), round(left):round(left + width)]


def set_overlay(driver, polygons: bool, labels: bool) -> None:
    for box, wanted in (("show-polygons", polygons), ("show-labels", labels)):
        element = driver.find_element("id", box)
        if element.is_selected() != wanted:
            element.click()


def busiest_frame(frames: list[dict]) -> dict:
    """A frame in the middle of the clip with many tracked words (the ticker is moving)."""
    middle = frames[len(frames) // 4: 3 * len(frames) // 4]
    return max(middle, key=lambda f: sum(i["track_id"] is not None for i in f["instances"]))


def outline_mask(instances: list[dict], shape: tuple[int, int], scale: float,
                 width: int) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for inst in instances:
        points = np.round(np.asarray(inst["polygon"]) * scale).astype(np.int32)
        cv2.polylines(mask, [points.reshape(-1, 1, 2)], True, 1, width)
    return mask.astype(bool)


def test_seek_shows_that_frame_with_its_polygons(clip: Clip, browser) -> None:
    open_page(browser, clip.page.as_uri())
    target = busiest_frame(clip.frames)
    assert len(target["instances"]) >= 3, "the spotter found too few words to test with"
    state = browser.execute_async_script(SEEK, target["pts"])
    assert state["frame"] == target["frame"]
    assert abs(state["mediaTime"] - target["pts"]) < 1e-3
    assert f"frame {target['frame']} " in browser.find_element("id", "clock").text

    set_overlay(browser, polygons=False, labels=False)
    plain = screenshot_of_video(browser)
    set_overlay(browser, polygons=True, labels=False)
    drawn = screenshot_of_video(browser)
    set_overlay(browser, polygons=True, labels=True)

    # The video shows the seeked frame itself, not a neighbour: sync of picture and overlay.
    height, width = clip.pixels[0].shape[:2]
    small = cv2.resize(plain, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    k = target["frame"]
    errors = {j: float(np.abs(small - clip.pixels[j]).mean()) for j in range(k - 2, k + 3)}
    assert min(errors, key=errors.get) == k, errors

    # Overlay pixels: on the polygons of this frame, in their colours, and nowhere else.
    overlay = np.abs(drawn.astype(int) - plain.astype(int)).max(axis=2) > 40
    scale = plain.shape[1] / width
    near = outline_mask(target["instances"], overlay.shape, scale, width=9)
    assert overlay.sum() > 200
    assert overlay[~near].sum() <= 0.02 * overlay.sum(), "overlay pixels off the polygons"
    for inst in target["instances"]:
        own = outline_mask([inst], overlay.shape, scale, width=3)
        assert overlay[own].mean() > 0.5, f"polygon of {inst['text']!r} not drawn"
        strong = own & overlay & (np.abs(drawn.astype(int) - plain.astype(int)).max(axis=2) > 80)
        colour = np.median(drawn[strong], axis=0)
        expected = np.array(track_colour(inst["track_id"]))
        assert np.abs(colour - expected).max() < 70, (inst["track_id"], colour, expected)


def test_clicking_a_track_seeks_to_its_first_pts(clip: Clip, browser) -> None:
    open_page(browser, clip.page.as_uri())
    rows = browser.find_elements("css selector", "#tracks li")
    firsts = {}  # track id -> (first pts, first frame), from the JSON Lines
    for frame in clip.frames:
        for inst in frame["instances"]:
            firsts.setdefault(inst["track_id"], (frame["pts"], frame["frame"]))
    assert len(rows) == len([t for t in firsts if t is not None])
    row = max(rows, key=lambda r: firsts[int(r.get_attribute("data-track"))][0])
    track = int(row.get_attribute("data-track"))
    pts, frame = firsts[track]
    assert pts > 0.2  # a track that starts later, so the seek is visible
    row.click()
    deadline = time.monotonic() + 10
    while browser.execute_script("return window.clipspotViewer.frame") != frame:
        assert time.monotonic() < deadline, "the click did not seek to the track's first frame"
        time.sleep(0.05)
    assert abs(browser.execute_script("return document.getElementById('video').currentTime")
               - pts) < 1e-3
    assert "live" in row.get_attribute("class")


def test_mpegts_is_transcoded_linked_and_served(clip: Clip, browser, tmp_path: Path) -> None:
    ts = tmp_path / "clip.ts"
    ts.write_bytes(b"".join(remux_to_mpegts(clip.video)))
    page = build_page(ts, clip.results, tmp_path / "site" / "page.html", embed_limit=0,
                      check_source=False, video_url="video")
    assert page.linked == tmp_path / "site" / "page.viewer.mp4" and "transcoded" in page.video
    server = make_server(page.path, page.linked, 0, "video")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        open_page(browser, f"http://127.0.0.1:{server.server_address[1]}/")
        target = clip.frames[len(clip.frames) // 2]
        state = browser.execute_async_script(SEEK, target["pts"])
        assert state["frame"] == target["frame"]
    finally:
        server.shutdown()
        server.server_close()


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_results_of_images_are_refused(clip: Clip, tmp_path: Path, capsys) -> None:
    images = tmp_path / "images.jsonl"
    images.write_text(json.dumps({"source": "a.jpg", "frame": 0, "pts": None,
                                  "instances": []}) + "\n", encoding="utf-8")
    assert "no pts" in _one_line_error(capsys, ["view", str(clip.video), str(images)])


@pytest.mark.parametrize("case", ["missing video", "not jsonl", "other video", "past the end"])
def test_bad_input_is_one_line(clip: Clip, tmp_path: Path, capsys, case: str) -> None:
    video, results = str(clip.video), tmp_path / "r.jsonl"
    lines = clip.results.read_text(encoding="utf-8").splitlines()
    if case == "missing video":
        video = str(tmp_path / "nothing.mp4")
        shutil.copy(clip.results, results)
    elif case == "not jsonl":
        results.write_text("frame,pts\n0,0.0\n", encoding="utf-8")
    elif case == "other video":
        results.write_text("\n".join(lines).replace("clip.mp4", "street.mp4"), encoding="utf-8")
    else:
        last = json.loads(lines[-1]) | {"frame": 500, "pts": 20.0}
        results.write_text("\n".join([*lines, json.dumps(last)]), encoding="utf-8")
    expected = {"missing video": "not found", "not jsonl": "not a ClipSpot prediction line",
                "other video": "street.mp4", "past the end": "does not match"}[case]
    assert expected in _one_line_error(capsys, ["view", video, str(results)])


def test_text_from_the_video_cannot_break_out_of_the_script() -> None:
    data = {"name": "<b>x</b>.mp4", "width": 8, "height": 8, "offset": 0.0, "untracked": "#0f0",
            "frames": [{"f": 0, "t": 0.0, "i": [[1, "</script><img src=x>", 0.9, [0, 0]]]}],
            "tracks": []}
    page = render_page(data, {"url": "v.mp4", "b64": ""}, "video/mp4")
    assert "</script><img" not in page and "<b>x</b>" not in page
    assert "__DATA_JSON__" not in page and "\\u003c/script>" in page
