"""One stream's messages -> numbered, decoded frames.

Two steps, so protocol errors are reported when a message arrives, not when the decoder gets
to it: `check` (order and kind, cheap, on arrival) and `decode` (CPU work, in arrival order).

    source = FrameSource(settings)
    source.check(payload)                 # StreamError: gap, duplicate, wrong kind
    frames = source.decode(payload)       # the frames this message completed (maybe none)
    tail = source.finish()                # frames still in the decoder at the end

Frame indices count presented frames from `first_frame`; pts are the container's (video) or the
client's (frames). The first `skip_frames` frames of a resumed byte stream are decoded and
dropped here: they were answered before the cut.
"""

from __future__ import annotations

import contextlib

import numpy as np

from pipeline.decode import StreamDecoder, decode_image_bytes
from pipeline.errors import ClipSpotError
from pipeline.types import VideoFrame
from services.stream_types import CHUNK_KINDS, Payload, StreamError, StreamSettings


class FrameSource:
    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.next_seq = settings.resume_from  # the next message `check` expects
        self.next_index = settings.first_frame
        self.consumed_seq: int | None = None  # last message fully decoded
        self._decoder = (
            StreamDecoder(settings.kind, name=settings.label)  # type: ignore[arg-type]
            if settings.kind in CHUNK_KINDS
            else None
        )

    def check(self, payload: Payload) -> None:
        """Validate a message's kind and sequence number as it arrives."""
        label, expected = self.settings.label, self.settings.payload_kind
        if payload.kind is None:
            if "config" in payload.what:
                where = ("before any " + expected if self.next_seq == self.settings.resume_from
                         else f"after seq {self.next_seq - 1}")
                raise StreamError(f"{label}: a second StreamConfig {where}; "
                                  "send one config per stream")
            raise StreamError(f"{label}: expected a {expected} message for input kind "
                              f"{self.settings.kind}, got {payload.what}")
        if payload.kind != expected:
            raise StreamError(f"{label}: expected a {expected} message for input kind "
                              f"{self.settings.kind}, got a {payload.kind} message")
        if payload.seq != self.next_seq:
            problem = "duplicate" if payload.seq < self.next_seq else "gap"
            raise StreamError(f"{label}: sequence {problem}: expected seq {self.next_seq}, "
                              f"got seq {payload.seq}")
        self.next_seq += 1

    def decode(self, payload: Payload) -> list[VideoFrame]:
        """The frames a checked message completes, numbered; skipped frames left out."""
        where = f"{self.settings.label} seq {payload.seq}"
        if payload.kind == "chunk":
            frames = self._decode_chunk(payload.data, where)
        else:
            frames = [VideoFrame(0, payload.pts, self._decode_frame(payload.data, where))]
        self.consumed_seq = payload.seq
        return self._number(frames)

    def finish(self) -> list[VideoFrame]:
        """Frames still inside the decoder when the client half-closes (or the server drains)."""
        if self._decoder is None or self.consumed_seq is None:
            self.discard()  # no bytes ever came: an empty stream, not a broken one
            return []
        where = f"{self.settings.label} at end of stream (after seq {self.consumed_seq})"
        try:
            frames = self._decoder.close()
            self._decoder = None
        except ClipSpotError as err:
            raise StreamError(f"{where}: {self._unlabel(err)}") from None
        return self._number(frames)

    def discard(self) -> None:
        """Stop the decoder's thread when the stream ends early (error, cancel)."""
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            with contextlib.suppress(ClipSpotError):
                decoder.close()

    def _number(self, frames: list[VideoFrame]) -> list[VideoFrame]:
        numbered = []
        for frame in frames:
            if self.next_index >= self.settings.skip_frames:
                numbered.append(VideoFrame(self.next_index, frame.pts, frame.image))
            self.next_index += 1
        return numbered

    def _decode_chunk(self, data: bytes, where: str) -> list[VideoFrame]:
        try:
            return self._decoder.feed(data)  # type: ignore[union-attr]
        except ClipSpotError as err:
            raise StreamError(f"{where}: {self._unlabel(err)}") from None

    def _unlabel(self, err: ClipSpotError) -> str:
        """The decoder's message without its stream-name prefix (`where` names the stream)."""
        message, prefix = str(err), f"{self.settings.label}: "
        return message[len(prefix):] if message.startswith(prefix) else message

    def _decode_frame(self, data: bytes, where: str) -> np.ndarray:
        if not data:
            raise StreamError(f"{where}: empty frame")
        shape = None if self.settings.raw_shape is None else (*self.settings.raw_shape, 3)
        try:
            return decode_image_bytes(data, shape=shape, name="frame")
        except ClipSpotError as err:
            raise StreamError(f"{where}: undecodable {self.settings.kind} frame: {err}") from None
