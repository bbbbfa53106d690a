"""What a stream is made of inside the server, in plain Python (protobuf stays at the edge).

The gRPC edge (services/grpc_edge.py) turns each StreamRequest into these and the stream core's
outputs back into StreamResponses; the core (services/stream_core.py) never sees protobuf.
Every enum of the stream protocol is defined here once, as the strings the core uses.

The errors say which gRPC status a stream ends with (services/servicer.py maps them):
StreamError -> INVALID_ARGUMENT, CreditsExceeded -> RESOURCE_EXHAUSTED,
StreamDrained -> UNAVAILABLE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.errors import ClipSpotError
from pipeline.types import FrameResult, TrackEvent

InputKind = Literal["mpegts", "fmp4", "images", "raw"]
INPUT_KINDS: tuple[InputKind, ...] = ("mpegts", "fmp4", "images", "raw")
CHUNK_KINDS: tuple[InputKind, ...] = ("mpegts", "fmp4")  # a byte stream cut anywhere

DropPolicy = Literal["none", "drop_oldest", "keep_latest"]
DROP_POLICIES: tuple[DropPolicy, ...] = ("none", "drop_oldest", "keep_latest")

PayloadKind = Literal["chunk", "frame"]


@dataclass(frozen=True)
class SessionLimits:
    """What a server accepts from one stream (protects the process from one bad client)."""

    initial_credits: int = 8  # messages a client may send before its first one is decoded
    default_queue: int = 8  # frames waiting for the runner when the config says 0
    max_queue: int = 64
    max_raw_side: int = 8192
    max_prompt_chars: int = 1000
    max_streams_per_client: int = 0  # open streams per client (servicer.client_identity); 0: any


@dataclass(frozen=True)
class StreamSettings:
    """A validated StreamConfig.

    detect_every: 0 the server's default keyframe mode; 1 detect every frame; k > 1 at most k
        frames between keyframes (adaptive unless `fixed_keyframes`).
    skip_frames: resume of a byte stream: the first frames decoded are already answered;
        they are decoded (the decoder needs them) but neither spotted nor answered.
    first_track_id: track ids count from here (a resumed stream starts above those seen).
    """

    stream_id: str
    kind: InputKind
    raw_shape: tuple[int, int] | None  # (height, width) for "raw"
    prompt: str | None  # None: the model's default prompt
    detect_every: int
    fixed_keyframes: bool
    max_fps: float  # 0: no cap on keyframes per second of pts
    drop_policy: DropPolicy
    max_queue: int
    resume_from: int
    first_frame: int
    skip_frames: int = 0
    first_track_id: int = 1

    @property
    def label(self) -> str:
        return f"stream {self.stream_id!r}"

    @property
    def payload_kind(self) -> PayloadKind:
        return "chunk" if self.kind in CHUNK_KINDS else "frame"


@dataclass(frozen=True)
class Payload:
    """One Chunk or Frame message. `kind` None: an empty or second-config message (an error
    the core reports with `what`)."""

    kind: PayloadKind | None
    seq: int
    data: bytes = b""
    pts: float | None = None
    what: str = ""  # how the edge named the message, for error text


@dataclass(frozen=True)
class Credits:
    """Permission to send `grant` more messages; `consumed_seq`: all up to it are decoded."""

    grant: int
    consumed_seq: int | None


@dataclass(frozen=True)
class AnsweredFrame:
    """One frame's result and the message (`seq`) that completed it."""

    result: FrameResult
    seq: int


StreamOutput = Credits | AnsweredFrame | TrackEvent


class StreamError(ClipSpotError):
    """Bad input on one stream: it ends with INVALID_ARGUMENT; the server keeps serving."""


class CreditsExceeded(StreamError):
    """A message the client held no credit for: RESOURCE_EXHAUSTED."""


class StreamDrained(Exception):
    """The stream was cut by the server's side (shutdown, or the model unreachable); resume
    at `next_frame`."""

    def __init__(
        self,
        settings: StreamSettings,
        next_frame: int,
        next_seq: int | None,
        reason: str = "server is shutting down",
    ) -> None:
        where = f"frame {next_frame}" + ("" if next_seq is None else f" (seq {next_seq})")
        super().__init__(
            f"{settings.label}: {reason}; every frame before {where} was answered; "
            "reconnect and resume from there"
        )
        self.next_frame = next_frame
        self.next_seq = next_seq
