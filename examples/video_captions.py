"""Spot a video, print each track as it starts and ends, and write its captions.

    python examples/video_captions.py street.mp4 street.vtt     # or street.srt
"""

import sys

import clipspot


def show(event: clipspot.TrackEvent) -> None:
    """Called as each track starts, changes its text and ends."""
    if event.kind == "started":
        print(f"{event.first_pts:7.2f}s  track {event.track_id} started: {event.text!r}")
    elif event.kind == "ended":
        print(f"{event.last_pts:7.2f}s  track {event.track_id} ended: {event.text!r}")


def main(video: str, captions: str) -> None:
    frames = words = 0
    for result in clipspot.spot_video(video, captions=captions, on_event=show):
        frames += 1
        words += len(result.instances)
    print(f"{frames} frames, {words} words; captions in {captions}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
