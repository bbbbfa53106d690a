"""Captions and the track-event log: `clipspot spot VIDEO --captions F.vtt|F.srt --events F`.

The WebVTT and SRT files are read back with the `webvtt-py` library (strict WebVTT parsing:
timestamps, cue settings), and the cue times checked against a synthetic video's exact ground
truth. The unit tests at the end build cues from hand-made events (no model).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import webvtt

from pipeline.captions import TrackCaptions, caption_format, to_srt, to_webvtt
from pipeline.data.video_gt import VideoGroundTruth
from pipeline.errors import ClipSpotError
from pipeline.track.matching import normalize_text
from pipeline.types import FrameResult, TextInstance, TrackEvent
from services.cli.main import main
from tests.grpc_harness import MAX_SIDE, make_video

K = 5  # clipspot spot's default: at most 5 frames between keyframes
FAST = ["--max-side", str(MAX_SIDE), "--threads", "1", "--detect-every", str(K)]


@dataclass
class Spotted:
    video: Path
    truth: VideoGroundTruth
    frames: list[dict]
    events: list[dict]
    vtt: Path


@dataclass
class TruthSpan:
    first: float  # pts of the first frame showing the word (even partly)
    last: float
    first_whole: float | None  # ... wholly (not don't-care): it can be read from then on
    last_whole: float | None
    centres: list[np.ndarray]  # the word's centre per frame, in percent of the frame


@pytest.fixture(scope="module")
def spotted(tmp_path_factory) -> Spotted:
    folder = tmp_path_factory.mktemp("captions")
    video, truth = make_video(folder)
    out, events, vtt = folder / "frames.jsonl", folder / "events.jsonl", folder / "synth.vtt"
    argv = ["spot", str(video), "--out", str(out), "--captions", str(vtt), "--events",
            str(events), *FAST]
    assert main(argv) == 0
    return Spotted(video, truth, _jsonl(out), _jsonl(events), vtt)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _spans(truth: VideoGroundTruth) -> dict[str, TruthSpan]:
    """Ground-truth tracks by normalised text (the synthetic words are distinct)."""
    spans: dict[str, TruthSpan] = {}
    size = np.array([truth.width, truth.height], dtype=np.float64)
    for frame in truth.frames:
        for obj in frame.objects:
            key = normalize_text(obj.text)
            span = spans.setdefault(key, TruthSpan(frame.pts, 0.0, None, None, []))
            span.last = frame.pts
            if not obj.dont_care:
                span.first_whole = frame.pts if span.first_whole is None else span.first_whole
                span.last_whole = frame.pts
            span.centres.append(obj.polygon.mean(axis=0) / size * 100)
    return spans


def _seconds(timestamp) -> float:
    return timestamp.in_milliseconds() / 1000


def test_webvtt_has_one_cue_per_track_with_its_final_text(spotted):
    captions = webvtt.read(str(spotted.vtt), strict=True)  # raises on any malformed cue
    ended = {e["track_id"]: e for e in spotted.events if e["event"] == "ended"}
    assert len(captions) == len(ended) >= 8
    identifiers = [c.identifier for c in captions]
    assert all(re.fullmatch(r"track-\d+", i) for i in identifiers)
    assert len(set(identifiers)) == len(identifiers)
    for caption in captions:
        event = ended[int(caption.identifier.removeprefix("track-"))]
        assert html.unescape(caption.raw_text) == event["text"]  # the voted, final text
        assert _seconds(caption.start_time) == pytest.approx(event["first_pts"], abs=1e-3)
    starts = [_seconds(c.start_time) for c in captions]
    assert starts == sorted(starts)


def test_cue_times_match_the_ground_truth(spotted):
    """A cue starts at the keyframe that first saw its word (at most K frames after the word
    could be read) and ends one frame after the last frame that showed it: when the word left,
    or up to K frames later (it is followed by motion until a keyframe misses it)."""
    frame = 1 / spotted.truth.fps
    spans = _spans(spotted.truth)
    matched = 0
    for caption in webvtt.read(str(spotted.vtt), strict=True):
        span = spans.get(normalize_text(html.unescape(caption.raw_text)))
        if span is None or span.first_whole is None or span.last_whole is None:
            continue  # a misread word (its times cannot be looked up by text), or never whole
        matched += 1
        start, end = _seconds(caption.start_time), _seconds(caption.end_time)
        late = K * frame + 1e-3
        assert span.first - 1e-3 <= start <= span.first_whole + late, caption
        assert span.last_whole + frame - late <= end <= span.last + frame + late, caption
    assert matched >= 8


def test_cues_sit_on_still_words_and_not_on_moving_ones(spotted):
    spans = _spans(spotted.truth)
    placed = 0
    for caption in webvtt.read(str(spotted.vtt), strict=True):
        span = spans.get(normalize_text(html.unescape(caption.raw_text)))
        if span is None or caption.settings.position is None:
            continue
        placed += 1
        x, y = (float(v.rstrip("%")) for v in (caption.settings.position, caption.settings.line))
        # Placed cues are at the word (the detector's box vs the exact quad: a few percent).
        nearest = min(np.abs(c - (x, y)).max() for c in span.centres)
        assert nearest < 4.0, (caption.raw_text, x, y)
    assert placed >= 3  # the synthetic signs stand still; the ticker's words are not placed


def test_srt_holds_the_same_cues(spotted, tmp_path):
    srt = tmp_path / "synth.srt"
    assert main(["spot", str(spotted.video), "--out", str(tmp_path / "f.jsonl"),
                 "--captions", str(srt), *FAST]) == 0
    text = srt.read_text(encoding="utf-8")
    assert text.startswith("1\n00:00:") and " --> " in text and "," in text.splitlines()[1]
    got = [(_seconds(c.start_time), _seconds(c.end_time), c.text) for c in webvtt.from_srt(srt)]
    want = [(_seconds(c.start_time), _seconds(c.end_time), html.unescape(c.raw_text))
            for c in webvtt.read(str(spotted.vtt), strict=True)]
    assert got == want
    numbers = [block.split("\n")[0] for block in text.strip().split("\n\n")]
    assert numbers == [str(n) for n in range(1, len(want) + 1)]


def test_events_log_each_track_once_from_start_to_end(spotted):
    assert all(set(e) == {"event", "track_id", "text", "score", "first_pts", "last_pts"}
               for e in spotted.events)
    started = [e["track_id"] for e in spotted.events if e["event"] == "started"]
    ended = [e["track_id"] for e in spotted.events if e["event"] == "ended"]
    assert sorted(started) == sorted(set(started)) == sorted(ended)
    shown = {i["track_id"] for f in spotted.frames for i in f["instances"]}
    assert shown == set(started)  # confirmed tracks only, each in the frame lines
    for event in spotted.events:
        assert 0 <= event["first_pts"] <= event["last_pts"] <= spotted.frames[-1]["pts"]
    # A track's events come after its first frame line: frame, then the events it caused.
    first_line = {}
    for number, f in enumerate(spotted.frames):
        for i in f["instances"]:
            first_line.setdefault(i["track_id"], number)
    assert all(spotted.frames[first_line[t]]["pts"] >= e["first_pts"]
               for e in spotted.events if e["event"] == "started" for t in [e["track_id"]])


@pytest.mark.parametrize("flag,value", [("--captions", "out.vtt"), ("--events", "ev.jsonl")])
def test_captions_and_events_need_a_video(flag, value, tmp_path, capsys):
    image = tmp_path / "still.png"
    image.write_bytes(b"not read: the check comes first")
    assert main(["spot", str(image), flag, str(tmp_path / value)]) == 2
    err = capsys.readouterr().err
    assert err == f"clipspot spot: error: {flag} needs a video input; {image} is not a video\n"


def test_an_unknown_caption_suffix_is_one_error_line(spotted, tmp_path, capsys):
    assert main(["spot", str(spotted.video), "--captions", str(tmp_path / "x.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clipspot spot: error: ") and "x.txt" in err and err.count("\n") == 1


# Unit tests: cues from hand-made events and frames.


def _event(kind, track_id, text, first, last, centre=(50.0, 50.0)) -> TrackEvent:
    x, y = centre
    square = np.array([[x - 5, y - 2], [x + 5, y - 2], [x + 5, y + 2], [x - 5, y + 2]])
    return TrackEvent(kind, track_id, text, 0.9, first, last, square.astype(np.float32))


def _frame(pts: float, *track_ids: int) -> FrameResult:
    words = tuple(TextInstance(np.zeros((4, 2), np.float32), "", 1.0, t) for t in track_ids)
    return FrameResult("v.mp4", round(pts * 10), pts, words)


def test_a_cue_runs_from_first_sighting_to_one_frame_after_the_last_frame_showing_it():
    captions = TrackCaptions(frame_size=(200, 100))
    items = [_frame(0.0), _frame(0.1, 1), _event("started", 1, "OPEN", 0.1, 0.1),
             _frame(0.2, 1), _frame(0.3, 1), _event("updated", 1, "OPEN 24", 0.1, 0.3),
             _frame(0.4, 1), _frame(0.5), _event("ended", 1, "OPEN 24", 0.1, 0.3)]
    for item in items:
        captions.add(item)
    (cue,) = captions.cues()
    assert (cue.start, cue.end, cue.text) == (0.1, pytest.approx(0.5), "OPEN 24")
    assert cue.position == pytest.approx((25.0, 50.0))


def test_events_alone_make_cues_and_odd_tracks_are_left_out():
    events = [
        _event("ended", 3, "late", 2.0, 2.0),  # seen once: one frame long, not zero
        _event("ended", 1, "a <b> & c", 0.0, 1.0),
        _event("ended", 2, "", 0.0, 1.0),  # detection-only weights: nothing to show
        _event("ended", 4, "still image", None, None),  # no pts: no time to show it at
    ]
    captions = TrackCaptions(frame_duration=0.04)
    for event in events:
        captions.add(event)
    cues = captions.cues()
    assert [(c.track_id, c.start, c.end) for c in cues] == [(1, 0.0, 1.04), (3, 2.0, 2.04)]
    assert all(c.position is None for c in cues)  # no frame size given
    vtt = webvtt.from_string(to_webvtt(cues), strict=True)
    assert vtt[0].raw_text == "a &lt;b&gt; &amp; c" and html.unescape(vtt[0].raw_text) == (
        "a <b> & c"
    )
    assert to_srt(cues).splitlines()[:3] == ["1", "00:00:00,000 --> 00:00:01,040", "a <b> & c"]


def test_a_word_that_moved_across_the_frame_is_not_pinned():
    captions = TrackCaptions(frame_size=(100, 100))
    captions.add(_event("started", 1, "TICKER", 0.0, 0.0, centre=(90.0, 95.0)))
    captions.add(_event("ended", 1, "TICKER", 0.0, 2.0, centre=(20.0, 95.0)))
    captions.add(_event("ended", 2, "SIGN", 0.0, 2.0, centre=(150.0, -3.0)))  # off the edge
    ticker, sign = captions.cues()
    assert ticker.position is None
    assert sign.position == (100.0, 0.0)  # clamped into the frame: valid WebVTT percentages
    assert "position:100.0% line:0.0%" in to_webvtt([sign])


def test_text_that_would_break_a_cue_stays_on_one_line():
    captions = TrackCaptions()
    captions.add(_event("ended", 1, "two\n\nlines --> here", 0.0, 1.0))
    (cue,) = captions.cues()
    assert cue.text == "two lines -> here"
    assert len(webvtt.from_string(to_webvtt([cue]), strict=True)) == 1


def test_caption_format_follows_the_suffix():
    assert caption_format("a/b.VTT") == "webvtt" and caption_format("c.srt") == "srt"
    with pytest.raises(ClipSpotError, match=r"x\.ass: captions must be a \.vtt"):
        caption_format("x.ass")
