"""ICDAR2015-video ("Text in Videos") scoring: MOTA, MOTP, IDF1 and track-level end-to-end.

Follows the RRC scripts `TL_video_2_0.py` (tracking) and `E2E_video_2_1.py` (end-to-end), with
py-motmetrics doing the MOT accounting:
- per frame, a ground-truth object is don't-care when its text contains '#' or its `dont_care`
  flag is set; in the end-to-end variant also when its track's text normalises to "" (the RRC
  script's "ID with no transcription");
- a prediction with more than half of its area inside a don't-care object of that frame is
  removed before accounting (neither hit nor false positive);
- a (GT, prediction) pair is a candidate only with IoU > 0.5; motmetrics gets the distance 1 - IoU;
  end-to-end candidates also need the prediction track's voted text to equal the GT track's text
  (both under `text_match.normalize_video_text`);
- MOTP is reported as 1 - mean distance, i.e. the mean IoU of matches (higher is better);
- where motmetrics divides by zero (no match for MOTP, no GT for MOTA) the number is 0, as the
  RRC script reports for a video without detections; a video with neither care GT nor care
  predictions scores 1 (nothing to find, nothing wrongly found).

Track-level end-to-end (our definition, after DAVAR's "F-score-R"): each prediction track's text
is its vote (`text_match.vote_text`); a (GT track, prediction track) pair is a candidate when the
texts are equal and they overlap with IoU > 0.5 in at least one frame (end-to-end care objects
only); a one-to-one assignment maximising the number of overlapping frames gives the hits;
precision = hits / prediction tracks with any instance left after don't-care removal,
recall = hits / GT tracks with any end-to-end care object.

Every reported number of several videos is the unweighted mean over videos, as RRC reports.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import motmetrics as mm
import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.data.video_gt import VideoGroundTruth
from pipeline.errors import ClipSpotError
from pipeline.eval.image_protocol import precision_recall_hmean
from pipeline.eval.polygons import iou_matrix, outside_dont_care, to_shape
from pipeline.eval.text_match import normalize_video_text, vote_text
from pipeline.types import FrameResult

IOU_THRESHOLD = 0.5
DONT_CARE_AREA = 0.5
MOT_METRICS = [
    "mota",
    "motp",
    "idf1",
    "num_matches",
    "num_switches",
    "num_false_positives",
    "num_misses",
    "num_objects",
    "num_predictions",
    "mostly_tracked",
    "mostly_lost",
]


def prediction_tracks(frames: Iterable[FrameResult]) -> dict[int, dict[int, Any]]:
    """frame -> {track id -> TextInstance}. Instances without a track id get a fresh negative id
    each (a one-frame track); a track id seen twice in one frame is an error."""
    by_frame: dict[int, dict[int, Any]] = {}
    fresh = -1
    for result in frames:
        if result.frame in by_frame:
            raise ClipSpotError(f"{result.source}: frame {result.frame} appears twice")
        tracks: dict[int, Any] = {}
        for inst in result.instances:
            tid = inst.track_id
            if tid is None:
                tid, fresh = fresh, fresh - 1
            if tid in tracks:
                raise ClipSpotError(
                    f"{result.source}: frame {result.frame}: track_id {tid} appears twice"
                )
            tracks[int(tid)] = inst
        by_frame[result.frame] = tracks
    return by_frame


class _Variant:
    """One accounting (tracking or end-to-end): a motmetrics accumulator plus per-pair overlap
    counts for the track-level score."""

    def __init__(self) -> None:
        self.acc = mm.MOTAccumulator(auto_id=False)
        self.overlaps: Counter[tuple[int, int]] = Counter()
        self.live_pred_tracks: set[int] = set()
        self.care_gt_tracks: set[int] = set()

    def add_frame(
        self,
        frame: int,
        gt: list[tuple[int, Any]],
        dont_care: list[Any],
        preds: dict[int, Any],
        gt_text: dict[int, str] | None,
        pred_text: dict[int, str],
    ) -> None:
        pred_ids = list(preds)
        pred_shapes = [to_shape(preds[t].polygon) for t in pred_ids]
        keep = outside_dont_care(pred_shapes, dont_care, DONT_CARE_AREA)
        pred_ids = [t for t, k in zip(pred_ids, keep, strict=True) if k]
        pred_shapes = [s for s, k in zip(pred_shapes, keep, strict=True) if k]
        ious = iou_matrix([s for _, s in gt], pred_shapes)
        dist = np.where(ious > IOU_THRESHOLD, 1.0 - ious, np.nan)
        for i, (gid, _) in enumerate(gt):
            for j, pid in enumerate(pred_ids):
                if gt_text is not None and gt_text[gid] != pred_text[pid]:
                    dist[i, j] = np.nan
                elif ious[i, j] > IOU_THRESHOLD:
                    self.overlaps[gid, pid] += 1
        self.acc.update([g for g, _ in gt], pred_ids, dist, frameid=frame)
        self.live_pred_tracks.update(pred_ids)
        self.care_gt_tracks.update(g for g, _ in gt)

    def mot_summary(self) -> dict[str, Any]:
        row = mm.metrics.create().compute(self.acc, metrics=MOT_METRICS, name="v").iloc[0]
        counts = {
            "matches": "num_matches",
            "switches": "num_switches",
            "false_positives": "num_false_positives",
            "misses": "num_misses",
            "gt_objects": "num_objects",
            "predictions": "num_predictions",
            "mostly_tracked": "mostly_tracked",
            "mostly_lost": "mostly_lost",
        }
        summary = {key: int(row[name]) for key, name in counts.items()}
        if summary["gt_objects"] == 0 and summary["predictions"] == 0:
            return {"mota": 1.0, "motp": 1.0, "idf1": 1.0, **summary}

        def finite(value: float) -> float:  # 0 where motmetrics divides by zero (RRC: 0)
            return float(value) if math.isfinite(value) else 0.0

        return {
            "mota": finite(row["mota"]),
            # motmetrics' motp is the mean distance (1 - IoU) of matches; report the mean IoU.
            "motp": 1.0 - float(row["motp"]) if math.isfinite(row["motp"]) else 0.0,
            "idf1": finite(row["idf1"]),
            **summary,
        }

    def track_summary(self) -> dict[str, Any]:
        """Track-level end-to-end P/R/H (text equality is already in the overlaps)."""
        gids = sorted(self.care_gt_tracks)
        pids = sorted(self.live_pred_tracks)
        weight = np.zeros((len(gids), len(pids)))
        for i, g in enumerate(gids):
            for j, p in enumerate(pids):
                weight[i, j] = self.overlaps.get((g, p), 0)
        rows, cols = linear_sum_assignment(weight, maximize=True)
        hits = int(sum(weight[r, c] > 0 for r, c in zip(rows, cols, strict=True)))
        return {
            **precision_recall_hmean(hits, len(gids), len(pids)),
            "matched": hits,
            "gt_tracks": len(gids),
            "pred_tracks": len(pids),
        }


def evaluate_video(
    ground_truth: VideoGroundTruth, predictions: Sequence[FrameResult]
) -> dict[str, Any]:
    """Score one video; prediction lines are matched to ground-truth frames by `frame`."""
    preds = prediction_tracks(predictions)
    gt_frames = {f.frame for f in ground_truth.frames}
    extra = sorted(set(preds) - gt_frames)
    if extra:
        raise ClipSpotError(
            f"{ground_truth.video}: prediction line for frame {extra[0]}, which the ground truth "
            f"does not have (it has {len(gt_frames)} frames)"
        )
    instances: dict[int, list[str]] = defaultdict(list)
    for tracks in preds.values():
        for tid, inst in tracks.items():
            instances[tid].append(inst.text)
    pred_text = {tid: vote_text(texts) for tid, texts in instances.items()}
    gt_text = {tid: normalize_video_text(text) for tid, text in ground_truth.tracks.items()}

    tracking, e2e = _Variant(), _Variant()
    for frame in ground_truth.frames:
        care, e2e_care, dont_care, e2e_dont_care = [], [], [], []
        for obj in frame.objects:
            shape = to_shape(obj.polygon)
            if obj.dont_care or "#" in obj.text:
                dont_care.append(shape)
                e2e_dont_care.append(shape)
                continue
            care.append((obj.track_id, shape))
            if gt_text.get(obj.track_id, ""):
                e2e_care.append((obj.track_id, shape))
            else:
                e2e_dont_care.append(shape)
        frame_preds = preds.get(frame.frame, {})
        tracking.add_frame(frame.frame, care, dont_care, frame_preds, None, pred_text)
        e2e.add_frame(frame.frame, e2e_care, e2e_dont_care, frame_preds, gt_text, pred_text)
    return {
        "video": ground_truth.video,
        "frames": len(ground_truth.frames),
        "tracking": tracking.mot_summary(),
        "end_to_end": e2e.mot_summary(),
        "track_e2e": e2e.track_summary(),
    }


def mean_over_videos(per_video: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The reported numbers: unweighted means over videos of the per-video fractions."""

    def mean(section: str, key: str) -> float:
        return float(np.mean([v[section][key] for v in per_video])) if per_video else 0.0

    return {
        "protocol": "icdar2015-video",
        "videos": len(per_video),
        "tracking": {k: mean("tracking", k) for k in ("mota", "motp", "idf1")},
        "end_to_end": {k: mean("end_to_end", k) for k in ("mota", "motp", "idf1")},
        "track_e2e": {k: mean("track_e2e", k) for k in ("precision", "recall", "hmean")},
        "per_video": list(per_video),
    }
