"""Confidence-weighted voting of a track's transcription over its frames.

A word seen in 30 frames is read 30 times, some of them wrong (blur, partial occlusion, a
frame where the box clipped a letter). Each reading votes for its exact text (case kept) with
its confidence; the track's text is the reading with the largest total. One confident misread
cannot outvote several agreeing reads, and the result stops flickering frame to frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Tally:
    weight: float = 0.0
    count: int = 0
    first_seen: int = 0  # order of first appearance: the tie-breaker, so votes are deterministic


@dataclass
class TextVote:
    """The running vote of one track. `max_candidates` bounds memory on long-lived tracks
    by forgetting the weakest candidate when a new one arrives."""

    max_candidates: int = 32
    _tallies: dict[str, _Tally] = field(default_factory=dict)
    _seen: int = 0
    _total_score: float = 0.0
    _readings: int = 0

    def add(self, text: str, score: float) -> None:
        """Count one reading. Empty texts (detected but not read) do not vote."""
        self._readings += 1
        self._total_score += float(score)
        if not text:
            return
        tally = self._tallies.get(text)
        if tally is None:
            if len(self._tallies) >= self.max_candidates:
                del self._tallies[min(self._tallies, key=lambda t: self._rank(t))]
            tally = self._tallies[text] = _Tally(first_seen=self._seen)
            self._seen += 1
        tally.weight += max(float(score), 1e-6)  # a zero-confidence read still counts a little
        tally.count += 1

    def _rank(self, text: str) -> tuple[float, int, int]:
        tally = self._tallies[text]
        return (tally.weight, tally.count, -tally.first_seen)

    @property
    def text(self) -> str:
        """The winning transcription ("" while no reading had text)."""
        if not self._tallies:
            return ""
        return max(self._tallies, key=self._rank)

    @property
    def support(self) -> float:
        """Share of the voting weight behind the winner, in [0, 1] (1 = all readings agree)."""
        total = sum(t.weight for t in self._tallies.values())
        return self._tallies[self.text].weight / total if total > 0 else 0.0

    @property
    def mean_score(self) -> float:
        """Mean confidence of all readings of the track, in [0, 1]."""
        return self._total_score / self._readings if self._readings else 0.0
