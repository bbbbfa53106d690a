from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InputKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INPUT_KIND_UNSPECIFIED: _ClassVar[InputKind]
    INPUT_KIND_MPEGTS: _ClassVar[InputKind]
    INPUT_KIND_FMP4: _ClassVar[InputKind]
    INPUT_KIND_IMAGES: _ClassVar[InputKind]
    INPUT_KIND_RAW_RGB: _ClassVar[InputKind]

class DropPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DROP_POLICY_UNSPECIFIED: _ClassVar[DropPolicy]
    DROP_POLICY_NONE: _ClassVar[DropPolicy]
    DROP_POLICY_DROP_OLDEST: _ClassVar[DropPolicy]
    DROP_POLICY_KEEP_LATEST: _ClassVar[DropPolicy]

class TrackEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACK_EVENT_KIND_UNSPECIFIED: _ClassVar[TrackEventKind]
    TRACK_EVENT_KIND_STARTED: _ClassVar[TrackEventKind]
    TRACK_EVENT_KIND_UPDATED: _ClassVar[TrackEventKind]
    TRACK_EVENT_KIND_ENDED: _ClassVar[TrackEventKind]
INPUT_KIND_UNSPECIFIED: InputKind
INPUT_KIND_MPEGTS: InputKind
INPUT_KIND_FMP4: InputKind
INPUT_KIND_IMAGES: InputKind
INPUT_KIND_RAW_RGB: InputKind
DROP_POLICY_UNSPECIFIED: DropPolicy
DROP_POLICY_NONE: DropPolicy
DROP_POLICY_DROP_OLDEST: DropPolicy
DROP_POLICY_KEEP_LATEST: DropPolicy
TRACK_EVENT_KIND_UNSPECIFIED: TrackEventKind
TRACK_EVENT_KIND_STARTED: TrackEventKind
TRACK_EVENT_KIND_UPDATED: TrackEventKind
TRACK_EVENT_KIND_ENDED: TrackEventKind

class StreamRequest(_message.Message):
    __slots__ = ("config", "chunk", "frame")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    chunk: Chunk
    frame: Frame
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ...) -> None: ...

class RawShape(_message.Message):
    __slots__ = ("width", "height")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Sampling(_message.Message):
    __slots__ = ("detect_every", "max_fps", "fixed_keyframes")
    DETECT_EVERY_FIELD_NUMBER: _ClassVar[int]
    MAX_FPS_FIELD_NUMBER: _ClassVar[int]
    FIXED_KEYFRAMES_FIELD_NUMBER: _ClassVar[int]
    detect_every: int
    max_fps: float
    fixed_keyframes: bool
    def __init__(self, detect_every: _Optional[int] = ..., max_fps: _Optional[float] = ..., fixed_keyframes: _Optional[bool] = ...) -> None: ...

class StreamConfig(_message.Message):
    __slots__ = ("stream_id", "input_kind", "raw_shape", "prompt", "sampling", "drop_policy", "max_queue", "resume_from", "first_frame", "skip_frames", "first_track_id")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_KIND_FIELD_NUMBER: _ClassVar[int]
    RAW_SHAPE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    DROP_POLICY_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    SKIP_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FIRST_TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    input_kind: InputKind
    raw_shape: RawShape
    prompt: str
    sampling: Sampling
    drop_policy: DropPolicy
    max_queue: int
    resume_from: int
    first_frame: int
    skip_frames: int
    first_track_id: int
    def __init__(self, stream_id: _Optional[str] = ..., input_kind: _Optional[_Union[InputKind, str]] = ..., raw_shape: _Optional[_Union[RawShape, _Mapping]] = ..., prompt: _Optional[str] = ..., sampling: _Optional[_Union[Sampling, _Mapping]] = ..., drop_policy: _Optional[_Union[DropPolicy, str]] = ..., max_queue: _Optional[int] = ..., resume_from: _Optional[int] = ..., first_frame: _Optional[int] = ..., skip_frames: _Optional[int] = ..., first_track_id: _Optional[int] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("seq", "data")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    seq: int
    data: bytes
    def __init__(self, seq: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("seq", "data", "pts")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    PTS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    data: bytes
    pts: float
    def __init__(self, seq: _Optional[int] = ..., data: _Optional[bytes] = ..., pts: _Optional[float] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("result", "track", "credits")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    result: FrameResult
    track: TrackEvent
    credits: Credits
    def __init__(self, result: _Optional[_Union[FrameResult, _Mapping]] = ..., track: _Optional[_Union[TrackEvent, _Mapping]] = ..., credits: _Optional[_Union[Credits, _Mapping]] = ...) -> None: ...

class Credits(_message.Message):
    __slots__ = ("grant", "consumed_seq")
    GRANT_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_SEQ_FIELD_NUMBER: _ClassVar[int]
    grant: int
    consumed_seq: int
    def __init__(self, grant: _Optional[int] = ..., consumed_seq: _Optional[int] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class TextInstance(_message.Message):
    __slots__ = ("polygon", "text", "score", "track_id")
    POLYGON_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    polygon: _containers.RepeatedCompositeFieldContainer[Point]
    text: str
    score: float
    track_id: int
    def __init__(self, polygon: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., text: _Optional[str] = ..., score: _Optional[float] = ..., track_id: _Optional[int] = ...) -> None: ...

class FrameResult(_message.Message):
    __slots__ = ("seq", "frame", "pts", "instances", "dropped")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    PTS_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    frame: int
    pts: float
    instances: _containers.RepeatedCompositeFieldContainer[TextInstance]
    dropped: bool
    def __init__(self, seq: _Optional[int] = ..., frame: _Optional[int] = ..., pts: _Optional[float] = ..., instances: _Optional[_Iterable[_Union[TextInstance, _Mapping]]] = ..., dropped: _Optional[bool] = ...) -> None: ...

class TrackEvent(_message.Message):
    __slots__ = ("kind", "track_id", "text", "score", "first_pts", "last_pts", "polygon")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FIRST_PTS_FIELD_NUMBER: _ClassVar[int]
    LAST_PTS_FIELD_NUMBER: _ClassVar[int]
    POLYGON_FIELD_NUMBER: _ClassVar[int]
    kind: TrackEventKind
    track_id: int
    text: str
    score: float
    first_pts: float
    last_pts: float
    polygon: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, kind: _Optional[_Union[TrackEventKind, str]] = ..., track_id: _Optional[int] = ..., text: _Optional[str] = ..., score: _Optional[float] = ..., first_pts: _Optional[float] = ..., last_pts: _Optional[float] = ..., polygon: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class SpotImageRequest(_message.Message):
    __slots__ = ("image", "prompt")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    prompt: str
    def __init__(self, image: _Optional[bytes] = ..., prompt: _Optional[str] = ...) -> None: ...

class SpotImageResponse(_message.Message):
    __slots__ = ("instances", "width", "height")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[TextInstance]
    width: int
    height: int
    def __init__(self, instances: _Optional[_Iterable[_Union[TextInstance, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...
