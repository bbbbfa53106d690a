#!/usr/bin/env bash
# RapidOCR on the IC15 validation split (img_901-img_1000), both settings, scored by `clipspot eval`.
#   bash deploy/peers/run_rapidocr.sh            # from the repository root
# Env: DATA (default /work/shared/data), OUT (default out/peers), THREADS (default 1).
set -euo pipefail
cd "$(dirname "$0")/../.."

DATA=${DATA:-/work/shared/data}
OUT=${OUT:-out/peers}
THREADS=${THREADS:-1}
RANGE=901-1000
PEERS=.venv-peers   # its own venv: opencv-python must not land in .venv

if [ ! -x "$PEERS/bin/python" ]; then
    python3 -m venv "$PEERS"
    "$PEERS/bin/pip" install -q --upgrade pip
fi
"$PEERS/bin/pip" install -q -r deploy/peers/requirements.txt
mkdir -p "$OUT"

for setting in default tuned; do
    pred="$OUT/rapidocr_$setting.jsonl"
    "$PEERS/bin/python" deploy/peers/rapidocr_spot.py "$DATA/ic15_train/images" \
        --images "$RANGE" --setting "$setting" --threads "$THREADS" --out "$pred" \
        2> "$OUT/rapidocr_$setting.time.json"
    echo "== RapidOCR $setting: $(cat "$OUT/rapidocr_$setting.time.json")"
    .venv/bin/clipspot eval --gt "$DATA/ic15_train/gt" --pred "$pred" --images "$RANGE" \
        | tee "$OUT/rapidocr_$setting.eval.json"
done
