"""Per-stream text tracking: association, voted transcriptions, life-cycle events."""

from pipeline.track.tracker import TextTracker, TrackerConfig
from pipeline.track.voting import TextVote

__all__ = ["TextTracker", "TextVote", "TrackerConfig"]
