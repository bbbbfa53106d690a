"""Run one peer OCR engine over images or video frames; write ClipSpot's JSON Lines.

    .venv-peers/bin/python bench/peers/peer_spot.py --engine rapidocr --setting default \
        --out preds.jsonl IMAGE_OR_VIDEO ...        # prints one JSON line of statistics

Runs inside .venv-peers and imports nothing from `pipeline` (the engines' dependencies, e.g.
rapidocr's opencv-python, must never meet the product's). One adapter per engine turns its
output into `{"source", "frame", "pts", "instances": [{"polygon", "text", "score",
"track_id": null}]}` lines, which `clipspot eval` and ClipSpot's tracker read. Videos are decoded
into memory first (at most --max-frames), so the timings are the engine alone, per frame.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".ts"}

# Settings per engine: "default" is the engine as installed; "tuneA"/"tuneB" are the two
# candidates of its one tuning, chosen between on IC15 img_801-900 (bench/image_accuracy.py).
RAPIDOCR = {
    "default": {},
    # the detector's short side to 960 (IC15 960x640 -> 1440x960, ClipSpot's own input size)
    "tuneA": {"Det.limit_side_len": 960},
    # ...and keep weaker boxes and readings
    "tuneB": {"Det.limit_side_len": 960, "Det.box_thresh": 0.3, "Global.text_score": 0.3},
}
EASYOCR = {
    "default": {},
    # width_ths: EasyOCR merges boxes closer than this (x height) into lines; IC15 scores words
    "tuneA": {"width_ths": 0.1},
    "tuneB": {"width_ths": 0.1, "mag_ratio": 1.5, "low_text": 0.3},
}
TESSERACT = {
    "default": {"config": "", "scale": 1.0},
    "tuneA": {"config": "--psm 11", "scale": 1.0},  # sparse text: no page layout assumed
    "tuneB": {"config": "--psm 11", "scale": 2.0},  # ...on the image enlarged 2x
}
SETTINGS = {"rapidocr": RAPIDOCR, "easyocr": EASYOCR, "tesseract": TESSERACT}


def quad(points: Any) -> list[list[float]]:
    """Any box the engines give (4 points or 2 corners) -> 4 points, clockwise on screen."""
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(arr) == 2:
        (x0, y0), (x1, y1) = arr
        arr = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    return [[round(float(x), 1), round(float(y), 1)] for x, y in arr[:4]]


class RapidOCREngine:
    def __init__(self, setting: str, threads: int, words: bool) -> None:
        from rapidocr import RapidOCR

        params = {"EngineConfig.onnxruntime.intra_op_num_threads": threads,
                  "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                  "Global.log_level": "error", **RAPIDOCR[setting]}
        if words:
            params["Global.return_word_box"] = True
        self.words = words
        self.engine = RapidOCR(params=params)

    def __call__(self, bgr: np.ndarray) -> list[dict]:
        out = self.engine(bgr)
        if out.boxes is None:
            return []
        if self.words and out.word_results and out.word_results[0][0][2] is not None:
            flat = [w for line in out.word_results for w in line]
            return [{"polygon": quad(box), "text": text, "score": float(score)}
                    for text, score, box in flat if box is not None and text.strip()]
        return [{"polygon": quad(b), "text": t, "score": float(s)}
                for b, t, s in zip(out.boxes, out.txts, out.scores, strict=True)]


class EasyOCREngine:
    def __init__(self, setting: str, threads: int, words: bool) -> None:
        import easyocr
        import easyocr_en_models
        import torch

        torch.set_num_threads(threads)
        # the offline package ships the weights; never download at run time
        self.reader = easyocr.Reader(["en"], gpu=False, verbose=False,
                                     model_storage_directory=easyocr_en_models.model_dir(),
                                     download_enabled=False)
        self.kwargs = EASYOCR[setting]

    def __call__(self, bgr: np.ndarray) -> list[dict]:
        found = self.reader.readtext(bgr, **self.kwargs)
        return [{"polygon": quad(box), "text": text, "score": float(score)}
                for box, text, score in found if text.strip()]


class TesseractEngine:
    def __init__(self, setting: str, threads: int, words: bool) -> None:
        import pytesseract

        os.environ["OMP_THREAD_LIMIT"] = str(threads)
        self.tess = pytesseract
        self.config, self.scale = TESSERACT[setting]["config"], TESSERACT[setting]["scale"]

    def __call__(self, bgr: np.ndarray) -> list[dict]:
        image = bgr if self.scale == 1.0 else cv2.resize(bgr, None, fx=self.scale, fy=self.scale,
                                                         interpolation=cv2.INTER_CUBIC)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        data = self.tess.image_to_data(rgb, lang="eng", config=self.config,
                                       output_type=self.tess.Output.DICT)
        words = []
        for i, text in enumerate(data["text"]):
            conf = float(data["conf"][i])
            if data["level"][i] != 5 or not text.strip() or conf < 0:
                continue
            x, y, w, h = (data[k][i] / self.scale for k in ("left", "top", "width", "height"))
            words.append({"polygon": quad([[x, y], [x + w, y + h]]), "text": text,
                          "score": conf / 100.0})
        return words


ENGINES = {"rapidocr": RapidOCREngine, "easyocr": EasyOCREngine, "tesseract": TesseractEngine}


def frames_of(path: Path, max_frames: int) -> list[tuple[int, float | None, np.ndarray]]:
    """(index, pts, BGR) of an image (one frame) or a video's first max_frames frames."""
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        image = cv2.imread(str(path))
        if image is None:
            raise SystemExit(f"{path}: not an image")
        return [(0, None, image)]
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while len(frames) < max_frames:
        ok, image = capture.read()
        if not ok:
            break
        frames.append((len(frames), round(len(frames) / fps, 4), image))
    capture.release()
    return frames


def cpu_seconds() -> float:
    """This process's CPU time and its finished children's (the tesseract CLI runs as one)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(engine: Any, inputs: list[Path], max_frames: int, out: Any) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {}
    frames, wall, cpu = 0, 0.0, 0.0
    for path in inputs:
        decoded = frames_of(path, max_frames)
        for index, pts, image in decoded:
            start, cpu_start = time.perf_counter(), cpu_seconds()
            words = engine(image)
            wall += time.perf_counter() - start
            cpu += cpu_seconds() - cpu_start
            latencies.setdefault(str(path), []).append(
                round(1000 * (time.perf_counter() - start), 1))
            line = {"source": str(path), "frame": index, "pts": pts,
                    "instances": [{**w, "track_id": None} for w in words]}
            out.write(json.dumps(line) + "\n")
        frames += len(decoded)
    return {"frames": frames, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "fps": round(frames / wall, 3) if wall else 0.0,
            "peak_rss_mb": round(max(resource.getrusage(who).ru_maxrss for who in (
                resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024, 1),
            "latency_ms": latencies}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="images and/or videos")
    parser.add_argument("--engine", choices=sorted(ENGINES), required=True)
    parser.add_argument("--setting", default="default")
    parser.add_argument("--words", action="store_true", help="RapidOCR: word boxes, not lines")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-frames", type=int, default=10**9, help="per video")
    parser.add_argument("--out", type=Path, required=True, help="JSON Lines predictions")
    args = parser.parse_args(argv)
    if args.setting not in SETTINGS[args.engine]:
        parser.error(f"--setting: {args.engine} has {sorted(SETTINGS[args.engine])}")
    cv2.setNumThreads(args.threads)
    load_start = time.perf_counter()
    engine = ENGINES[args.engine](args.setting, args.threads, args.words)
    engine(np.zeros((64, 64, 3), np.uint8))  # warm-up: lazy set-up is not a frame's cost
    load_s = time.perf_counter() - load_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as out:
        stats = run(engine, args.inputs, args.max_frames, out)
    params = SETTINGS[args.engine][args.setting]
    print(json.dumps({"engine": args.engine, "setting": args.setting, "words": args.words,
                      "params": params, "load_s": round(load_s, 2),
                      "load_average": [round(x, 2) for x in os.getloadavg()], **stats}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
