"""How ClipSpot compares transcriptions when scoring (generic, no lexicon).

Two rules, one per protocol, both written down in docs/evaluation.md:

- Images (ICDAR2015 Challenge 4, end-to-end, generic): keep only the characters for which
  Python's `str.isalnum()` is true (Unicode letters and digits, so `É` and `ß` stay), then
  `str.upper()`. Two words match when these forms are equal and not empty. The RRC script only
  strips one special character at each end and compares `.upper()`; stripping all punctuation
  is our deliberate "alphanumeric equality" (it forgives `PRICES!!` vs `PRICES`, which the
  generic setting cannot tell apart anyway). An empty form (a GT word made only of punctuation,
  or a detection with no text) never matches: a detector that reads nothing gets no credit.
- Video (RRC "Text in Videos" E2E script): `.upper()`, then remove every character that is not
  `[0-9A-Za-z]` or a CJK ideograph (U+4E00..U+9FA5), exactly the regular expression of
  `E2E_video_2_1.py`. The RRC script strips the ground truth only; we strip both sides, since a
  track's text is voted on normalised readings anyway.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

# The character class of the RRC video script: digits, ASCII letters, CJK unified ideographs.
_NOT_VIDEO_CHAR = re.compile("[^0-9A-Za-z\u4e00-\u9fa5]")


def normalize_image_text(text: str) -> str:
    """IC15 end-to-end form: Unicode alphanumerics only, upper-cased."""
    return "".join(ch for ch in text if ch.isalnum()).upper()


def image_texts_match(gt_text: str, pred_text: str) -> bool:
    """Case-insensitive alphanumeric equality; an empty normalised form never matches."""
    gt = normalize_image_text(gt_text)
    return bool(gt) and gt == normalize_image_text(pred_text)


def normalize_video_text(text: str) -> str:
    """RRC video form: upper-case, then keep [0-9A-Za-z] and CJK ideographs only."""
    return _NOT_VIDEO_CHAR.sub("", text.upper())


def vote_text(texts: Iterable[str]) -> str:
    """A track's transcription: the most frequent normalised (video rule) non-empty reading.

    Empty readings (frames that were only detected) do not vote, so a track read in 3 of 10
    frames still gets its word; ties go to the reading seen first. "" when nothing was read.
    """
    counts = Counter(t for t in (normalize_video_text(x) for x in texts) if t)
    return counts.most_common(1)[0][0] if counts else ""
