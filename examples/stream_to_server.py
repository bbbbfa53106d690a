"""Stream a video to a running ClipSpot service with the asyncio client; write its captions.

    clipspot serve &                       # the service, on localhost:50051
    python examples/stream_to_server.py street.mp4 localhost:50051 street.vtt
"""

import asyncio
import sys

import clipspot


async def main(video: str, server: str, captions: str) -> None:
    track_captions = clipspot.TrackCaptions()  # cues from the streamed frames and events
    async with clipspot.ClipSpotClient(server) as client:
        await client.wait_ready(timeout_s=30)
        options = clipspot.StreamOptions(detect_every=5)
        async for item in client.stream_video(video, options):
            track_captions.add(item)
            if isinstance(item, clipspot.TrackEvent) and item.kind == "started":
                print(f"{item.first_pts:7.2f}s  new text: {item.text!r}")
    print(f"{track_captions.write(captions)} captions in {captions}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
