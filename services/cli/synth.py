"""`clipspot synth`: synthetic images and videos with exact ground truth.

    clipspot synth images --out DIR --count N --seed S [--width 960 --height 640]
    clipspot synth video  --out DIR --seconds T --seed S [--fps 25 --width 640 --height 360]
                          [--scenario ticker,pan,signs,occlusion] [--name NAME]
    clipspot synth words  --out DIR --count N --seed S [--labels-from DATA]
    clipspot synth show   GT --out DIR [--every K]
    clipspot synth camera --ic15 DIR --split tune|report --out DIR [--count N --seconds T]
                          [--width 640 --height 360 --fps 25 --seed S]

images writes `img_N.jpg` + `gt_img_N.txt` (ICDAR2015); video writes `DIR/NAME.mp4` and its
ground truth `DIR/NAME.json` (format in docs/synth.md). Both take `--fonts DIR`,
`--backgrounds DIR` and `--render` (also draw the ground truth, read back from the written files,
over the images / decoded frames into `DIR/render/`). `show` does the same for existing output.
words writes word crops for the recognizer as `.npz` shards of 500 (`clipspot train recognizer
--synth-shards DIR` reads them; rendering is slow, so it is done once, beside the training).
camera writes `DIR/camera_SPLIT_I.mp4` + `.json`: a camera panning, zooming, shaking and cutting
over real IC15 stills (tune: img_801..900, report: img_901..1000; see pipeline/data/camera_clips).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from pipeline.data import camera_clips, synth_images, synth_text, synth_video
from pipeline.data.readers import DONT_CARE, image_number, read_icdar_gt
from pipeline.data.video_gt import read_video_gt, write_video_gt
from pipeline.errors import ClipSpotError

SHARD_SIZE = 500  # word crops per .npz shard
CARE_COLOUR, DONT_CARE_COLOUR = (40, 255, 40), (255, 60, 60)  # RGB


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    images = kinds.add_parser("images", help="ICDAR2015-format images: img_N.jpg + gt_img_N.txt")
    images.add_argument("--out", required=True, type=Path, help="output folder")
    images.add_argument("--count", type=int, default=100, help="number of images (default 100)")
    images.add_argument("--width", type=int, default=960)
    images.add_argument("--height", type=int, default=640)
    video = kinds.add_parser("video", help="an H.264 MP4 and its per-frame ground-truth JSON")
    video.add_argument("--out", required=True, type=Path, help="output folder")
    video.add_argument("--seconds", type=float, default=6.0)
    video.add_argument("--fps", type=float, default=25.0)
    video.add_argument("--width", type=int, default=640)
    video.add_argument("--height", type=int, default=360)
    video.add_argument("--scenario", default=",".join(synth_video.SCENARIOS),
                       help="comma-separated mix of ticker,pan,signs,occlusion (default: all)")
    video.add_argument("--name", help="file stem of the .mp4/.json (default synth_SEED)")
    words = kinds.add_parser("words", help="word crops for the recognizer, as .npz shards")
    words.add_argument("--out", required=True, type=Path, help="output folder")
    words.add_argument("--count", type=int, default=5000, help="number of crops (default 5000)")
    words.add_argument("--labels-from", type=Path, metavar="DATA",
                       help="shared data root: also draw the real training labels (35%%)")
    for sub in (images, video, words):
        sub.add_argument("--seed", type=int, default=0, help="same seed, same output")
        sub.add_argument("--fonts", type=Path,
                         help="folder of .ttf/.otf fonts (default: system DejaVu)")
        sub.add_argument("--backgrounds", type=Path,
                         help="folder of text-free photos (default: procedural streets)")
        if sub is not words:  # crops are their own picture
            sub.add_argument("--render", action="store_true",
                             help="also draw the ground truth over the output into OUT/render/")
    show = kinds.add_parser("show", help="draw ground truth over images or video frames")
    show.add_argument("gt", type=Path, help="an images folder (gt_img_N.txt) or a video .json")
    show.add_argument("--out", required=True, type=Path, help="folder for the PNGs")
    show.add_argument("--every", type=int, help="video: draw every K-th frame (default: 1/s)")
    _add_camera_arguments(kinds)


def _add_camera_arguments(kinds: argparse._SubParsersAction) -> None:
    camera = kinds.add_parser("camera", help="camera-motion clips over real IC15 stills")
    camera.add_argument(
        "--ic15",
        required=True,
        type=Path,
        metavar="DIR",
        help="the IC15 folder (images/img_N.jpg, gt/gt_img_N.txt)",
    )
    # Checked by the library, not by argparse `choices`, so a bad value is one error line.
    camera.add_argument(
        "--split", default="tune", help="tune (img_801..900) or report (img_901..1000)"
    )
    camera.add_argument("--out", required=True, type=Path, help="output folder")
    camera.add_argument("--count", type=int, default=10, help="number of clips (default 10)")
    camera.add_argument("--seconds", type=float, default=6.0)
    camera.add_argument("--fps", type=float, default=25.0)
    camera.add_argument("--width", type=int, default=640)
    camera.add_argument("--height", type=int, default=360)
    camera.add_argument("--seed", type=int, default=0, help="same seed, same output")


def run(args: argparse.Namespace) -> int:
    if args.kind == "show":
        count = render_ground_truth(args.gt, args.out, args.every)
        print(f"drew the ground truth over {count} pictures in {args.out}")
        return 0
    if args.kind == "camera":
        _camera(args)
        return 0
    fonts = synth_text.find_fonts(args.fonts)
    backgrounds = synth_images.load_backgrounds(args.backgrounds)
    _make_folder(args.out)
    if args.kind == "words":
        _words(args)
        return 0
    if args.kind == "images":
        _images(args, fonts, backgrounds)
        gt_path = args.out
    else:
        gt_path = _video(args, fonts, backgrounds)
    if args.render:
        count = render_ground_truth(gt_path, args.out / "render", None)
        print(f"drew the ground truth over {count} pictures in {args.out / 'render'}")
    return 0


def _make_folder(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ClipSpotError(f"{path}: exists and is not a folder") from None
    except PermissionError:
        raise ClipSpotError(f"{path}: permission denied") from None


def _images(args: argparse.Namespace, fonts: tuple, backgrounds: tuple) -> None:
    if args.count < 1:
        raise ClipSpotError(f"--count {args.count}: must be at least 1")
    if not (64 <= args.width <= 8192 and 64 <= args.height <= 8192):
        raise ClipSpotError(f"--width/--height {args.width}x{args.height}: use 64..8192")
    with tqdm(total=args.count, desc="synth images", unit="img", disable=None) as bar:
        synth_images.write_icdar_images(args.out, args.count, args.seed, args.width, args.height,
                                        fonts, backgrounds, progress=bar.update)
    print(f"wrote {args.count} images with ICDAR2015 ground truth to {args.out}")


def _words(args: argparse.Namespace) -> None:
    from pipeline.model.charset import Charset
    from pipeline.train.word_data import real_word_sets, save_word_shard, synth_renderer, to_sample

    if args.count < 1:
        raise ClipSpotError(f"--count {args.count}: must be at least 1")
    charset, lexicon = Charset(), []
    if args.labels_from:
        root = args.labels_from
        sets = real_word_sets(root / "ic15_words_train", root / "iiit5k_train", "train", charset)
        lexicon = sorted({w.text for group in sets.values() for w in group})
    render = synth_renderer(args.fonts, args.backgrounds, lexicon, charset)
    rng = np.random.default_rng(args.seed)
    with tqdm(total=args.count, desc="synth words", unit="crop", disable=None) as bar:
        for shard, start in enumerate(range(0, args.count, SHARD_SIZE)):
            samples = []
            for _ in range(min(SHARD_SIZE, args.count - start)):
                samples.append(to_sample(*render(rng)))
                bar.update()
            save_word_shard(args.out / f"shard_{args.seed:02d}_{shard:04d}.npz", samples)
    print(f"wrote {args.count} word crops to {args.out}")


def _video(args: argparse.Namespace, fonts: tuple, backgrounds: tuple) -> Path:
    config = synth_video.VideoConfig(
        width=args.width, height=args.height, fps=args.fps, seconds=args.seconds,
        seed=args.seed, scenarios=synth_video.parse_scenarios(args.scenario),
    )
    synth_video.check_size(config)
    name = args.name or f"synth_{args.seed}"
    mp4_path, json_path = args.out / f"{name}.mp4", args.out / f"{name}.json"
    with tqdm(total=config.frame_count, desc="synth video", unit="frame", disable=None) as bar:
        gt = synth_video.write_video(config, mp4_path, fonts, backgrounds, progress=bar.update)
    write_video_gt(gt, json_path)
    print(f"wrote {mp4_path} ({len(gt.frames)} frames, {config.width}x{config.height} at "
          f"{config.fps:g} fps, {len(gt.tracks)} words) and its ground truth {json_path}")
    return json_path


def _camera(args: argparse.Namespace) -> None:
    if not args.ic15.is_dir():
        raise ClipSpotError(f"--ic15 {args.ic15}: folder not found")
    camera_clips.set_stills(args.ic15, args.split)  # bad split or folder: fail before --out
    _make_folder(args.out)
    config = camera_clips.CameraClipConfig(fps=args.fps)
    paths = camera_clips.camera_clip_set(
        args.ic15,
        args.split,
        args.out,
        (args.width, args.height),
        args.count,
        args.seconds,
        args.seed,
        config,
    )
    print(
        f"wrote {len(paths)} camera clips ({args.width}x{args.height}, {args.seconds:g} s, "
        f"{args.split} stills) with their ground truth to {args.out}"
    )


def render_ground_truth(gt_path: Path, out_dir: Path, every: int | None) -> int:
    """Draw ground truth (read back from disk) over images or decoded frames; returns the count."""
    if not gt_path.exists():
        raise ClipSpotError(f"{gt_path}: not found")
    if gt_path.is_dir():
        pairs = _image_pairs(gt_path)
    elif gt_path.suffix.lower() == ".json":
        pairs = _video_pairs(gt_path, every)
    else:
        raise ClipSpotError(f"{gt_path}: expected an images folder or a video ground-truth .json")
    _make_folder(out_dir)
    count = 0
    for name, image, objects in tqdm(pairs, desc="render", unit="img", disable=None):
        for polygon, label, dont_care in objects:
            _draw(image, polygon, label, DONT_CARE_COLOUR if dont_care else CARE_COLOUR)
        cv2.imwrite(str(out_dir / f"{name}.png"), image[..., ::-1])
        count += 1
    return count


def _image_pairs(folder: Path):
    gt_files = sorted(folder.glob("gt_img_*.txt"), key=image_number)
    if not gt_files:
        raise ClipSpotError(f"{folder}: no gt_img_N.txt files")
    for gt_file in gt_files:
        image_path = folder / f"img_{image_number(gt_file)}.jpg"
        if not image_path.exists():  # the IC15 layout: gt/gt_img_N.txt beside images/img_N.jpg
            image_path = folder.parent / "images" / image_path.name
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ClipSpotError(f"{image_path}: missing or not a readable image")
        words = read_icdar_gt(gt_file)
        yield image_path.stem, bgr[..., ::-1].copy(), [
            (w.polygon, w.text, w.text == DONT_CARE) for w in words]


def _video_pairs(json_path: Path, every: int | None):
    gt = read_video_gt(json_path)
    every = every or max(1, round(gt.fps))
    video_path = json_path.parent / gt.video
    if not video_path.is_file():
        raise ClipSpotError(f"{json_path}: its video {video_path} is missing")
    try:
        with av.open(str(video_path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index % every or index >= len(gt.frames):
                    continue
                objects = [(o.polygon, f"{o.track_id}:{o.text}", o.dont_care)
                           for o in gt.frames[index].objects]
                name = f"{video_path.stem}_frame{index:05d}"
                yield name, frame.to_ndarray(format="rgb24"), objects
    except av.error.FFmpegError as err:
        raise ClipSpotError(f"{video_path}: cannot decode ({err})") from None


def _draw(image: np.ndarray, polygon: np.ndarray, label: str, colour: tuple) -> None:
    points = np.round(polygon).astype(np.int32)
    cv2.polylines(image, [points], True, colour, 1, cv2.LINE_AA)
    cv2.circle(image, tuple(int(v) for v in points[0]), 2, colour, -1)  # first (top-left) point
    x, y = int(points[:, 0].min()), int(points[:, 1].min()) - 3
    cv2.putText(image, label, (x, max(8, y)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 3,
                cv2.LINE_AA)
    cv2.putText(image, label, (x, max(8, y)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1,
                cv2.LINE_AA)
