"""Scoring by the field's own rules: ICDAR2015 images (Challenge 4) and ICDAR2015-video.

- `text_match`: how transcriptions are compared (one place for the normalisation rules).
- `polygons`: polygon IoU and intersection-over-detection with shapely.
- `image_protocol`: detection and end-to-end precision/recall/hmean on still images.
- `video_protocol`: MOTA/MOTP/IDF1 (tracking and end-to-end) and track-level end-to-end P/R/H.

The rules are written down in docs/evaluation.md.
"""
