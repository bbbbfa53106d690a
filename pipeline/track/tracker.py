"""Per-stream text tracker: stable ids, voted text, confirmed tracks and life-cycle events.

    tracker = TextTracker(TrackerConfig())          # one per stream; no shared state
    instances, events = tracker.update(frame, pts, spotted_instances)   # a spotted frame
    ids, polygons = tracker.followable()             # between keyframes: where the words were,
    tracker.move(frame, {id: moved_or_None})         # ... and where image motion put them
    instances = tracker.carry(frame, pts)            # a frame that was not spotted
    events = tracker.finish()                        # end of stream: every track ends

Each spotted frame's detections are matched one-to-one to live tracks by an affinity that mixes
polygon IoU (against the track's position: moved by image motion when the caller follows it,
else predicted by a constant-velocity model) with text similarity, using the Hungarian
algorithm. Unmatched detections start tracks; tracks unmatched for more than `max_age` spotted
frames end. Every output instance carries its track's voted text, so a word's transcription is
stable across frames.

Only confirmed tracks reach users: a track is confirmed once it was seen on `confirm_hits`
spotted frames, or at once when one sighting scores at least `confirm_score`. Its "started"
event comes on the frame it is confirmed, carrying its true first pts; an unconfirmed track
that dies is never reported (a one-keyframe false detection stays invisible).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.track.matching import affinity_matrix, assign, polygon_iou
from pipeline.track.voting import TextVote
from pipeline.types import TextInstance, TrackEvent


@dataclass(frozen=True)
class TrackerConfig:
    """Association and life-time parameters (see docs/video.md).

    min_iou: a detection can continue a track only if it overlaps the track's predicted
        polygon by at least this IoU. Lower tolerates faster motion and jittery boxes; higher
        avoids jumping between neighbouring words.
    text_weight: share of text similarity in the affinity (the rest is IoU). Higher keeps
        identities through crossings and dense lines of words; lower trusts geometry when
        recognition is noisy.
    max_age: spotted frames a track may go unmatched before it ends. Higher bridges
        detector misses and short occlusions; lower ends tracks promptly and risks fewer
        wrong re-associations. Counted in spotted frames, so it scales with detect-every-k.
    velocity_smoothing: weight of the newest displacement in the exponential moving average
        of a track's velocity (pixels per frame); 0 turns the motion model off.
    max_candidates: distinct transcriptions a track remembers for its vote.
    confirm_hits: spotted frames a track must be seen on before it is reported.
    confirm_score: a sighting scored at least this confirms its track at once (scores are
        calibrated probabilities of being right, see docs/reader.md).
    first_id: the first track id; a resumed stream starts above the ids its client has seen.
    """

    min_iou: float = 0.1
    text_weight: float = 0.3
    max_age: int = 8
    velocity_smoothing: float = 0.5
    max_candidates: int = 32
    confirm_hits: int = 2
    confirm_score: float = 0.7  # chosen on the tune camera clips (docs/video.md)
    first_id: int = 1


@dataclass
class _Track:
    track_id: int
    polygon: np.ndarray  # last matched polygon
    score: float
    frame: int  # frame index of the last match
    first_pts: float | None
    last_pts: float | None
    vote: TextVote
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.float32))
    misses: int = 0  # consecutive spotted frames without a match
    has_velocity: bool = False
    hits: int = 1  # spotted frames the track was seen on
    confirmed: bool = False  # reported to users (see TrackerConfig.confirm_hits)
    visible: bool = True  # False once image motion lost it; a keyframe match restores it

    def predict(self, frame: int) -> np.ndarray:
        """The polygon shifted to where constant velocity puts it at `frame`."""
        return (self.polygon + self.velocity * float(frame - self.frame)).astype(np.float32)

    def event(self, kind: str) -> TrackEvent:
        return TrackEvent(
            kind=kind,  # type: ignore[arg-type]
            track_id=self.track_id,
            text=self.vote.text,
            score=self.vote.mean_score,
            first_pts=self.first_pts,
            last_pts=self.last_pts,
            polygon=self.polygon,
        )


class TextTracker:
    """Tracks the words of one stream; create one instance per stream."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = self.config.first_id
        self._reported = 0
        self.last_track_ids: list[int] = []

    @property
    def live_track_ids(self) -> list[int]:
        return [t.track_id for t in self._tracks]

    @property
    def tracks_started(self) -> int:
        """Tracks reported so far (confirmed ones; unconfirmed tracks are never shown)."""
        return self._reported

    def update(
        self, frame_index: int, pts: float | None, instances: list[TextInstance]
    ) -> tuple[tuple[TextInstance, ...], list[TrackEvent]]:
        """Associate one spotted frame's instances; return them with track ids and voted text
        (in input order) and the events this frame caused."""
        predicted = [t.predict(frame_index) for t in self._tracks]
        iou = polygon_iou(predicted, [i.polygon for i in instances])
        affinity = affinity_matrix(
            iou,
            [t.vote.text for t in self._tracks],
            [i.text for i in instances],
            self.config.text_weight,
        )
        pairs = assign(affinity, iou >= max(self.config.min_iou, 1e-9))
        events: list[TrackEvent] = []
        owner: dict[int, _Track] = {}
        for row, col in pairs:
            track = self._tracks[row]
            before, was_confirmed = track.vote.text, track.confirmed
            self._continue(track, frame_index, pts, instances[col])
            owner[col] = track
            if track.confirmed and not was_confirmed:
                self._reported += 1
                events.append(track.event("started"))
            elif track.confirmed and track.vote.text != before:
                events.append(track.event("updated"))
        matched = {row for row, _ in pairs}
        for row, track in enumerate(self._tracks):
            if row not in matched:
                track.misses += 1
        for col, instance in enumerate(instances):
            if col not in owner:
                owner[col] = self._start(frame_index, pts, instance)
                if owner[col].confirmed:
                    self._reported += 1
                    events.append(owner[col].event("started"))
        events.extend(self._expire())
        # Every input's track, confirmed or not (callers keep per-track memory by it).
        self.last_track_ids = [owner[col].track_id for col in range(len(instances))]
        out = tuple(
            TextInstance(inst.polygon, owner[col].vote.text, inst.score, owner[col].track_id)
            for col, inst in enumerate(instances)
            if owner[col].confirmed
        )
        return out, events

    def owners(self, frame_index: int, polygons: list[np.ndarray]) -> list[int | None]:
        """Which live track each polygon would continue, by geometry alone (no text: the words
        are not read yet). Lets a caller read only the words that need it."""
        predicted = [t.predict(frame_index) for t in self._tracks]
        iou = polygon_iou(predicted, polygons)
        pairs = assign(iou, iou >= max(self.config.min_iou, 1e-9))
        found: list[int | None] = [None] * len(polygons)
        for row, col in pairs:
            found[col] = self._tracks[row].track_id
        return found

    def voted(self, track_id: int) -> tuple[str, float, float]:
        """A live track's voted text, its last score and the vote's support in [0, 1]."""
        track = next(t for t in self._tracks if t.track_id == track_id)
        return track.vote.text, track.score, track.vote.support

    def followable(self) -> tuple[list[int], list[np.ndarray]]:
        """Ids and polygons of the tracks worth following between keyframes: seen on the last
        spotted frame and not lost by image motion since."""
        live = [t for t in self._tracks if t.misses == 0 and t.visible]
        return [t.track_id for t in live], [t.polygon for t in live]

    def move(self, frame_index: int, moved: dict[int, np.ndarray | None]) -> None:
        """Place tracks where image motion put them on `frame_index` (None: lost; the track
        stays alive, hidden, until a keyframe finds it again or it ages out)."""
        for track in self._tracks:
            if track.track_id not in moved:
                continue
            polygon = moved[track.track_id]
            if polygon is None:
                track.visible = False
            else:
                track.polygon = np.asarray(polygon, dtype=np.float32)
                track.frame = frame_index

    def carry(self, frame_index: int, pts: float | None = None) -> tuple[TextInstance, ...]:
        """Instances for a frame that was not spotted: the tracks seen on the last spotted frame,
        moved by their velocity. Changes no state and emits no events."""
        del pts  # carried frames do not move a track's first/last pts: nothing was observed
        return tuple(
            TextInstance(t.predict(frame_index), t.vote.text, t.score, t.track_id)
            for t in self._tracks
            if t.misses == 0 and t.visible and t.confirmed
        )

    def finish(self) -> list[TrackEvent]:
        """End every live track (end of stream)."""
        events = [t.event("ended") for t in self._tracks if t.confirmed]
        self._tracks = []
        return events

    def _start(self, frame_index: int, pts: float | None, instance: TextInstance) -> _Track:
        vote = TextVote(max_candidates=self.config.max_candidates)
        vote.add(instance.text, instance.score)
        track = _Track(
            track_id=self._next_id,
            polygon=np.asarray(instance.polygon, dtype=np.float32),
            score=float(instance.score),
            frame=frame_index,
            first_pts=pts,
            last_pts=pts,
            vote=vote,
            confirmed=self._confirms(1, instance.score),
        )
        self._next_id += 1
        self._tracks.append(track)
        return track

    def _continue(
        self, track: _Track, frame_index: int, pts: float | None, instance: TextInstance
    ) -> None:
        polygon = np.asarray(instance.polygon, dtype=np.float32)
        gap = frame_index - track.frame
        alpha = self.config.velocity_smoothing
        if gap > 0 and alpha > 0:
            step = (polygon.mean(axis=0) - track.polygon.mean(axis=0)) / gap
            track.velocity = (
                step if not track.has_velocity else alpha * step + (1 - alpha) * track.velocity
            )
            track.has_velocity = True
        track.polygon = polygon
        track.score = float(instance.score)
        track.frame = frame_index
        track.last_pts = pts
        track.misses = 0
        track.visible = True
        track.hits += 1
        track.confirmed = track.confirmed or self._confirms(track.hits, instance.score)
        track.vote.add(instance.text, instance.score)

    def _confirms(self, hits: int, score: float) -> bool:
        return hits >= self.config.confirm_hits or score >= self.config.confirm_score

    def _expire(self) -> list[TrackEvent]:
        ended = [t for t in self._tracks if t.misses > self.config.max_age]
        self._tracks = [t for t in self._tracks if t.misses <= self.config.max_age]
        return [t.event("ended") for t in ended if t.confirmed]
