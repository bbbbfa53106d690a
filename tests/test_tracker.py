"""The per-stream text tracker: ids, crossings, voting, events, carried frames, track end.

Detections are built by hand (known boxes and texts moving in known ways), which is what the
tracker consumes from the spotter; the expected ids and texts follow from the motion.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.runner import RunnerConfig, VideoRunner
from pipeline.track import TextTracker, TextVote, TrackerConfig
from pipeline.track.matching import polygon_iou, text_similarity
from pipeline.types import TextInstance, VideoFrame


def box(x: float, y: float, w: float = 80, h: float = 24) -> np.ndarray:
    """Clockwise quad (image coordinates, y down) with top-left corner (x, y)."""
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float32)


def word(x: float, y: float, text: str, score: float = 0.9) -> TextInstance:
    return TextInstance(box(x, y), text, score)


def test_matching_scores_follow_their_definitions():
    # Two 10x10 squares overlapping by half: intersection 50, union 150.
    iou = polygon_iou([box(0, 0, 10, 10)], [box(5, 0, 10, 10), box(50, 50, 10, 10)])
    assert iou[0, 0] == pytest.approx(1 / 3) and iou[0, 1] == 0.0
    assert text_similarity("EXIT", "EX1T") == pytest.approx(0.75)
    assert text_similarity("Exit!", "exit") == 1.0
    assert text_similarity("", "exit") is None


def test_moving_words_keep_their_ids():
    tracker = TextTracker()
    speeds = {"SALE": (6, 0), "OPEN": (-4, 3), "CAFE": (0, -5)}
    starts = {"SALE": (10, 40), "OPEN": (400, 100), "CAFE": (200, 300)}
    seen: dict[str, set[int]] = {t: set() for t in speeds}
    for frame in range(30):
        found = [
            word(starts[t][0] + speeds[t][0] * frame, starts[t][1] + speeds[t][1] * frame, t)
            for t in speeds
        ]
        instances, _ = tracker.update(frame, frame / 25, found)
        for inst in instances:
            seen[inst.text].add(inst.track_id)
    assert seen == {"SALE": {1}, "OPEN": {2}, "CAFE": {3}}


def test_crossing_words_keep_their_identity():
    """Two words on one line move towards each other, overlap fully, and part again."""
    tracker = TextTracker()
    ids: dict[str, set[int]] = {"LEFT": set(), "RIGHT": set()}
    for frame in range(21):
        # Input order flips each frame so the result cannot come from list position.
        found = [word(100 + 10 * frame, 50, "LEFT"), word(300 - 10 * frame, 50, "RIGHT")]
        found = found if frame % 2 else found[::-1]
        instances, _ = tracker.update(frame, None, found)
        for inst, detection in zip(instances, found, strict=True):
            assert inst.text == detection.text
            ids[inst.text].add(inst.track_id)
    assert ids["LEFT"] != ids["RIGHT"]
    assert len(ids["LEFT"]) == len(ids["RIGHT"]) == 1


def test_vote_is_confidence_weighted():
    vote = TextVote()
    for text, score in [("EX1T", 0.95), ("EXIT", 0.6), ("EXIT", 0.6), ("", 0.99)]:
        vote.add(text, score)
    assert vote.text == "EXIT"  # 1.2 beats one confident misread at 0.95
    assert vote.support == pytest.approx(1.2 / 2.15)
    assert vote.mean_score == pytest.approx((0.95 + 1.2 + 0.99) / 4)


def test_output_text_is_the_voted_text_and_changes_emit_updated():
    tracker = TextTracker()
    readings = [("EX1T", 0.65), ("EXIT", 0.4), ("EXIT", 0.4), ("EX1T", 0.1), ("EXlT", 0.3)]
    texts, kinds = [], []
    for frame, (text, score) in enumerate(readings):
        instances, events = tracker.update(frame, 0.04 * frame, [word(50, 50, text, score)])
        texts.append(instances[0].text if instances else None)
        kinds.append([(e.kind, e.text) for e in events])
    # Unsure first sighting (0.65 < confirm_score): reported from its second keyframe on.
    assert texts == [None, "EX1T", "EXIT", "EXIT", "EXIT"]
    assert kinds == [[], [("started", "EX1T")], [("updated", "EXIT")], [], []]


def test_only_confirmed_tracks_are_reported():
    tracker = TextTracker(TrackerConfig(max_age=1))
    # A one-keyframe false detection (score 0.5) beside a real word seen twice.
    found = [word(10, 10, "REAL", 0.6), word(300, 300, "GHOST", 0.5)]
    first, events = tracker.update(0, 1.0, found)
    assert first == () and events == []
    second, events = tracker.update(1, 1.5, [word(12, 10, "REAL", 0.6)])
    assert [(i.track_id, i.text) for i in second] == [(1, "REAL")]
    assert [(e.kind, e.first_pts) for e in events] == [("started", 1.0)]  # its true first pts
    later = [tracker.update(f, 1.0 + f / 2, [word(12, 10, "REAL", 0.6)])[1] for f in (2, 3, 4)]
    assert all(e.kind != "ended" for events in later for e in events)  # GHOST dies unseen
    assert [e.track_id for e in tracker.finish()] == [1]
    assert tracker.tracks_started == 1
    # A sure sighting (score >= confirm_score) is reported at once.
    sure, events = TextTracker().update(0, 0.0, [word(0, 0, "SURE", 0.95)])
    assert len(sure) == 1 and [e.kind for e in events] == ["started"]


def test_events_carry_first_and_last_pts_and_a_lost_word_ends_after_max_age():
    tracker = TextTracker(TrackerConfig(max_age=2))
    all_events = []
    for frame in range(8):
        found = [word(10, 10, "STAY")] + ([word(200, 200, "GONE")] if frame < 3 else [])
        _, events = tracker.update(frame, 10.0 + frame, found)
        all_events.extend((frame, e) for e in events)
    ended = [(frame, e) for frame, e in all_events if e.kind == "ended"]
    # GONE is last seen at frame 2, missed at 3, 4 (max_age 2) and ends at the third miss.
    assert [(f, e.track_id, e.text) for f, e in ended] == [(5, 2, "GONE")]
    assert (ended[0][1].first_pts, ended[0][1].last_pts) == (10.0, 12.0)
    assert tracker.live_track_ids == [1]
    final = tracker.finish()
    assert [(e.kind, e.track_id, e.first_pts, e.last_pts) for e in final] == [
        ("ended", 1, 10.0, 17.0)
    ]
    # A word that comes back after its track ended gets a new id: ids are never reused.
    instances, events = tracker.update(9, 19.0, [word(200, 200, "GONE")])
    assert instances[0].track_id == 3 and events[0].kind == "started"


def test_carry_moves_live_tracks_by_their_velocity_without_changing_state():
    tracker = TextTracker()
    tracker.update(0, 0.0, [word(100, 50, "MOVE"), word(400, 400, "STILL")])
    tracker.update(3, 0.12, [word(130, 50, "MOVE")])  # 10 px per frame; STILL missed
    carried = tracker.carry(5, 0.2)
    assert [(i.track_id, i.text) for i in carried] == [(1, "MOVE")]  # STILL was not seen last
    assert np.allclose(carried[0].polygon, box(150, 50))
    again = tracker.carry(5, 0.2)
    assert np.array_equal(again[0].polygon, carried[0].polygon)
    instances, events = tracker.update(6, 0.24, [word(160, 50, "MOVE")])
    assert instances[0].track_id == 1 and events == []


def test_trackers_do_not_share_ids():
    a, b = TextTracker(), TextTracker()
    assert a.update(0, None, [word(0, 0, "A")])[0][0].track_id == 1
    assert b.update(0, None, [word(0, 0, "B")])[0][0].track_id == 1


def test_runner_carries_skipped_frames_and_accounts_for_every_frame():
    """detect_every=3 through the runner's track_frame path (spotting done by the caller, as
    in the Ray service): keyframes get tracked detections, the others carried ones."""
    config = RunnerConfig(detect_every=3, follow_motion=False, adaptive=False)
    runner = VideoRunner(None, config, source="cam")
    results = []
    for index in range(10):
        frame = VideoFrame(index, 1.0 + index / 25, np.zeros((8, 8, 3), np.uint8))
        spotted = [word(10 + 5 * index, 20, "TICKER")] if runner.is_keyframe(index) else None
        results.append(runner.track_frame(frame, spotted))
    assert [r.frame for r in results] == list(range(10))
    assert [r.pts for r in results] == [1.0 + i / 25 for i in range(10)]
    assert runner.frames_spotted == 4  # frames 0, 3, 6, 9
    assert all(len(r.instances) == 1 and r.instances[0].track_id == 1 for r in results)
    # Frame 7 is carried from keyframe 6 with the velocity measured between keyframes.
    assert np.allclose(results[7].instances[0].polygon, box(10 + 5 * 7, 20))
    assert [e.kind for e in runner.take_events()] == ["started"]
    assert [e.kind for e in runner.finish()] == ["ended"]
