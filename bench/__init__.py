"""ClipSpot's benchmark harness against the OCR engines users would pick instead (issue 13).

`clipspot bench [--quick]` (services/cli/bench.py) runs bench/run.py; one file per idea:
image_accuracy, video_accuracy, service_load, model_speed, tcm_speed, report; the peers run
in their own virtual environment (bench/peers/). A benchmark, not a test.
"""
