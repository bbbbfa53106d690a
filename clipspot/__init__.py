"""ClipSpot's Python API: read the text in images and video, in this process or on a server.

    import clipspot

    spotter = clipspot.Spotter.load()                        # the shipped weights
    words = spotter.spot([clipspot.read_image("sign.jpg")])[0]    # list[TextInstance]

    for result in clipspot.spot_video("street.mp4", spotter, captions="street.vtt"):
        print(result.pts, [(w.track_id, w.text) for w in result.instances])

    async with clipspot.ClipSpotClient("localhost:50051") as client:   # `clipspot serve`
        async for item in client.stream_video("street.mp4"):
            ...                                              # a FrameResult or a TrackEvent

Each name is defined in `pipeline` (the library) or `services` (the gRPC client) and only
re-exported here; docs/python-api.md has the tour, examples/ has runnable scripts.
"""

from clipspot.aio_client import ClipSpotClient
from pipeline.captions import TrackCaptions, write_captions
from pipeline.decode import read_image
from pipeline.errors import ClipSpotError
from pipeline.spotter import Spotter
from pipeline.types import FrameResult, TextInstance, TrackEvent
from pipeline.video_job import spot_video
from services.client import StreamOptions
from services.tls import ClientTls

__all__ = [
    "ClientTls",
    "ClipSpotClient",
    "ClipSpotError",
    "FrameResult",
    "Spotter",
    "StreamOptions",
    "TextInstance",
    "TrackCaptions",
    "TrackEvent",
    "read_image",
    "spot_video",
    "write_captions",
]
