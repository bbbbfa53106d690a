"""`clipspot view`: a page that plays a video with ClipSpot's results drawn over it.

    clipspot view clip.mp4 clip.jsonl                  # writes clip.html; open it in a browser
    clipspot view clip.mp4 clip.jsonl --out page.html --embed-limit 0   # link, do not embed
    clipspot view clip.mp4 clip.jsonl --serve --port 8000               # http://127.0.0.1:8000/

The page is built by pipeline/viewer.py (see docs/viewer.md). `--serve` writes the same page
and serves it on 127.0.0.1 only, together with the video when it is linked rather than
embedded (at /video, with HTTP range requests so the browser can seek);
nothing else on disk is reachable through it. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import re
import sys
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from pipeline.errors import ClipSpotError
from pipeline.viewer import EMBED_LIMIT_BYTES, build_page

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_CHUNK = 1 << 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="the video the results were spotted on")
    parser.add_argument("results", help="its JSON Lines (from `clipspot spot` or `stream`)")
    parser.add_argument("--out", default=None,
                        help="the page to write (default: RESULTS with an .html suffix)")
    parser.add_argument("--embed-limit", type=float, default=EMBED_LIMIT_BYTES / 2**20,
                        metavar="MB", help="embed videos up to this size in the page, link "
                        "larger ones relatively (default %(default)g MB; 0: always link)")
    parser.add_argument("--any-source", action="store_true",
                        help="accept results whose `source` names another file (renamed video)")
    parser.add_argument("--serve", action="store_true",
                        help="also serve the page on 127.0.0.1 and print its URL")
    parser.add_argument("--port", type=int, default=8000,
                        help="port for --serve (default 8000; 0: any free port)")


def run(args: argparse.Namespace) -> int:
    if args.embed_limit < 0:
        raise ClipSpotError(f"--embed-limit must be >= 0 MB, got {args.embed_limit}")
    out = Path(args.out) if args.out else Path(args.results).with_suffix(".html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise ClipSpotError(f"{out}: the page must be an .html file")
    video_url = "video" if args.serve else None
    page = build_page(args.video, args.results, out, embed_limit=int(args.embed_limit * 2**20),
                      check_source=not args.any_source, video_url=video_url)
    print(f"clipspot view: {page.summary()}", file=sys.stderr)
    if not args.serve:
        return 0
    server = make_server(page.path, page.linked, args.port, video_url or "")
    host, port = server.server_address[:2]
    print(f"clipspot view: serving http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def make_server(page: Path, video: Path | None, port: int, video_url: str) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 that answers `/` (and `/PAGE.html`) with the page and
    `/VIDEO_URL` with the linked video; everything else is 404."""
    routes = {"/": (page, "text/html; charset=utf-8")}
    routes["/" + page.name] = routes["/"]
    if video is not None:
        mime = "video/webm" if video.suffix.lower() == ".webm" else "video/mp4"
        routes["/" + video_url] = (video, mime)
    try:
        return ThreadingHTTPServer(("127.0.0.1", port), partial(_Handler, routes))
    except OSError as err:
        raise ClipSpotError(f"cannot serve on 127.0.0.1:{port} ({err.strerror})") from None


class _Handler(BaseHTTPRequestHandler):
    """Serves a fixed set of files; a video is served in byte ranges, which browsers need to
    seek in a file they have not downloaded yet."""

    def __init__(self, routes: dict[str, tuple[Path, str]], *args: object) -> None:
        self.routes = routes
        super().__init__(*args)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        route = self.routes.get(unquote(self.path.split("?", 1)[0]))
        if route is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        path, mime = route
        size = path.stat().st_size
        start, end = _byte_range(self.headers.get("Range"), size)
        if start >= size and size > 0:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return
        partial_content = self.headers.get("Range") is not None
        self.send_response(HTTPStatus.PARTIAL_CONTENT if partial_content else HTTPStatus.OK)
        self.send_header("Content-Type", mime)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start))
        if partial_content:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        self._copy(path, start, end)

    def _copy(self, path: Path, start: int, end: int) -> None:
        with path.open("rb") as f:
            f.seek(start)
            while start < end:
                chunk = f.read(min(_CHUNK, end - start))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the browser seeks by dropping a request: not an error
                start += len(chunk)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per range request would drown the summary


def _byte_range(header: str | None, size: int) -> tuple[int, int]:
    """[start, end) of a single `Range: bytes=a-b` header; the whole file without one."""
    match = _RANGE.match(header.strip()) if header else None
    if match is None:
        return 0, size
    first, last = match.groups()
    if not first:  # "bytes=-N": the last N bytes
        return max(0, size - int(last or 0)), size
    return int(first), min(size, int(last) + 1) if last else size
