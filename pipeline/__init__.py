"""ClipSpot's pure library: data, model, decoding, tracking and scoring.

Nothing under `pipeline` imports ray, grpc or redis (tests/test_layering.py enforces it);
the serving layer in `services` wraps this package.
"""

from pipeline.errors import ClipSpotError
from pipeline.types import FrameResult, TextInstance, TrackEvent, VideoFrame

__all__ = ["ClipSpotError", "FrameResult", "TextInstance", "TrackEvent", "VideoFrame"]
