"""`clipspot stream`: send a video, a folder of images or one image to a running service and
print its results as the same JSON Lines as `clipspot spot`.

    clipspot serve &                                          # or a Ray Serve deployment
    clipspot stream clip.mp4 --server localhost:50051 > clip.jsonl
    clipspot stream frames/ --server host:9000 --detect-every 3 --events tracks.jsonl

A video file is remuxed to MPEG-TS without re-encoding and streamed; a folder's images are sent
as consecutive frames (tracked); a single image goes through the unary SpotImage call. A stream
URL (rtsp://, http(s)://) is decoded here, reconnecting when the camera drops (--reconnect-for,
pipeline/live_source.py), and each frame is sent as a JPEG with the camera's pts. Frame
lines go to stdout (or --out); track events (started/updated/ended) to --events if given.
A server run with TLS or tokens (docs/security.md) needs `--tls-ca` (plus `--tls-cert/--tls-key`
for mutual TLS) and `--token-file` or $CLIPSPOT_TOKEN.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING

import cv2

from pipeline.decode import (
    IMAGE_SUFFIXES,
    VideoReader,
    input_kind,
    list_images,
    read_image,
)
from pipeline.errors import ClipSpotError
from pipeline.jsonl import write_items
from pipeline.live_source import DEFAULT_RECONNECT_S, is_live_url, open_video, show_live_log
from pipeline.render import VideoWriter, draw_instances, write_image
from pipeline.types import FrameResult, VideoFrame

if TYPE_CHECKING:
    from services.client import SentFrame, SpotClient
    from services.tls import ClientTls

DEFAULT_SERVER = "localhost:50051"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="video file, stream URL, folder of images, or one image")
    parser.add_argument("--server", default=DEFAULT_SERVER,
                        help=f"HOST:PORT of a ClipSpot service (default {DEFAULT_SERVER})")
    parser.add_argument("--out", default=None, help="write JSON Lines here instead of stdout")
    parser.add_argument("--events", default=None,
                        help="write track events (JSON Lines) to this file")
    parser.add_argument("--render", default=None,
                        help="also write an annotated copy of the input here")
    parser.add_argument("--detect-every", type=int, default=0, metavar="K",
                        help="at most K frames between keyframes (default: the server's, "
                             "adaptive k=5); words are followed by motion in between")
    parser.add_argument("--every-frame", action="store_true",
                        help="detect and read every frame (slow; same as --detect-every 1)")
    parser.add_argument("--retry", type=float, default=60.0, metavar="SECONDS",
                        help="after a cut (server restart, network drop), resume for this "
                             "long (default 60; 0: do not resume)")
    parser.add_argument("--reconnect-for", type=float, default=DEFAULT_RECONNECT_S,
                        metavar="SECONDS",
                        help="stream URL: when the camera drops, reconnect for this long "
                             f"(default {DEFAULT_RECONNECT_S:g}; 0: end at the first drop)")
    parser.add_argument("--max-fps", type=float, default=0.0,
                        help="spot at most this many frames per second of video (0: all)")
    parser.add_argument("--prompt", default=None, help="custom text prompt for the detector")
    parser.add_argument("--drop-policy", default="none",
                        choices=("none", "drop_oldest", "keep_latest"),
                        help="when the server falls behind: wait (none) or drop frames")
    parser.add_argument("--stream-id", default="", help="name of the stream in server logs")
    parser.add_argument("--connect-timeout", type=float, default=10.0,
                        help="seconds to wait for the server (default 10)")
    _add_security_arguments(parser)


def _add_security_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls", action="store_true",
                        help="connect with TLS, trusting the system's CAs (implied by --tls-*)")
    parser.add_argument("--tls-ca", default=None, metavar="FILE",
                        help="connect with TLS, trusting this PEM CA for the server's certificate")
    parser.add_argument("--tls-cert", default=None, metavar="FILE",
                        help="mutual TLS: this client's PEM certificate (with --tls-key)")
    parser.add_argument("--tls-key", default=None, metavar="FILE",
                        help="mutual TLS: the PEM private key of --tls-cert")
    parser.add_argument("--token-file", default=None, metavar="PATH",
                        help="send the bearer token in this file (default: $CLIPSPOT_TOKEN)")


def run(args: argparse.Namespace) -> int:
    from services.client import SpotClient, StreamOptions  # gRPC only for this command

    if args.detect_every < 0:
        raise ClipSpotError(f"--detect-every must be >= 0 (0: the server's default), "
                            f"got {args.detect_every}")
    if args.reconnect_for < 0:
        raise ClipSpotError(f"--reconnect-for must be >= 0 seconds, got {args.reconnect_for}")
    live = is_live_url(args.input)
    if live and args.render:
        raise ClipSpotError("--render needs a file or folder input; for a stream URL use "
                            "`clipspot spot URL --render OUT.mp4`")
    kind = input_kind(args.input)
    options = StreamOptions(
        stream_id=args.stream_id or (args.input if live else Path(args.input).name),
        prompt=args.prompt,
        detect_every=1 if args.every_frame else args.detect_every,
        max_fps=args.max_fps,
        drop_policy=args.drop_policy,
        retry_s=args.retry,
    )
    with ExitStack() as stack:
        out = _open(stack, args.out) or sys.stdout
        events_out = _open(stack, args.events)
        client = stack.enter_context(SpotClient(args.server, tls=client_tls(args),
                                                token=client_token(args.token_file)))
        client.wait_ready(args.connect_timeout)
        if live:
            show_live_log("clipspot stream")
            camera = open_video(args.input, reconnect_for_s=args.reconnect_for)
            items = client.stream_frames(_jpeg_frames(args.input, camera), options)
        elif kind == "image":
            items = _spot_one_image(client, args.input, args.prompt)
        elif kind == "directory":
            items = client.stream_images(list_images(args.input), options)
        else:
            items = client.stream_video(args.input, options)
        renderer = _Renderer(args.input, kind, args.render, stack) if args.render else None
        frames, words, tracks = 0, 0, set()
        for result in write_items(items, out, events_out):
            frames += 1
            words += len(result.instances)
            tracks.update(i.track_id for i in result.instances if i.track_id is not None)
            if renderer is not None:
                renderer.draw(result)
    render = f", annotated output in {args.render}" if args.render else ""
    print(f"clipspot stream: {frames} frames, {words} words, {len(tracks)} tracks from "
          f"{args.server}; JSON Lines in {args.out or 'stdout'}{render}", file=sys.stderr)
    return 0


def client_tls(args: argparse.Namespace) -> ClientTls | None:
    from services.tls import ClientTls

    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key):
        return None
    return ClientTls(args.tls_ca, args.tls_cert, args.tls_key)


def client_token(path: str | None) -> str | None:
    """The token of --token-file (its first line), else $CLIPSPOT_TOKEN, else none."""
    if path is None:
        return os.environ.get("CLIPSPOT_TOKEN") or None
    from services.auth import read_tokens

    return read_tokens(path)[0].decode()


class _Renderer:
    """Draws each result on the input's own pixels, decoded again locally (the server never
    sends frames back): an .mp4 for a video, an image or a folder of images otherwise."""

    def __init__(self, source: str, kind: str, target: str, stack: ExitStack) -> None:
        self.kind, self.target = kind, Path(target)
        self.writer: VideoWriter | None = None
        if kind == "video":
            if self.target.suffix.lower() != ".mp4":
                raise ClipSpotError(f"{target}: --render for a video must be an .mp4 file")
            reader = VideoReader(source)
            self.frames = iter(reader)
            self.writer = stack.enter_context(VideoWriter(target, fps=reader.info.fps or 25.0))

    def draw(self, result: FrameResult) -> None:
        if self.writer is not None:
            frame = next(self.frames)
            while frame.index < result.frame:  # a resumed stream starts later; never earlier
                frame = next(self.frames)
            self.writer.write(draw_instances(frame.image, result.instances), result.pts)
            return
        image = draw_instances(read_image(result.source), result.instances)
        single = self.kind == "image" and self.target.suffix.lower() in IMAGE_SUFFIXES
        write_image(self.target if single else self.target / Path(result.source).name, image)


def _open(stack: ExitStack, path: str | None) -> IO[str] | None:
    if path is None:
        return None
    try:
        return stack.enter_context(open(path, "w", encoding="utf-8"))
    except OSError as err:
        raise ClipSpotError(f"{path}: cannot write ({err.strerror})") from None


def _jpeg_frames(name: str, frames: Iterable[VideoFrame]) -> Iterator[SentFrame]:
    """A decoded camera's frames as JPEGs (a tenth of raw RGB's bytes), with its pts."""
    for frame in frames:
        ok, data = cv2.imencode(".jpg", frame.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise ClipSpotError(f"{name}: frame {frame.index} could not be encoded as JPEG")
        yield name, data.tobytes(), frame.pts


def _spot_one_image(client: SpotClient, path: str, prompt: str | None) -> Iterator[FrameResult]:
    instances = client.spot_image(Path(path).read_bytes(), prompt)
    yield FrameResult(source=path, frame=0, pts=None, instances=tuple(instances))
