#!/usr/bin/env bash
# Create .venv-peers: RapidOCR 3.10, EasyOCR 1.7 (offline English weights) and Tesseract 5.
#   bash bench/peers/setup.sh          # from anywhere; idempotent
# torch/torchvision (5.5 GB with their CUDA libraries) are NOT installed a second time: the
# product venv's installed copies are hard-linked (`cp -al`, same filesystem, no extra space),
# dist-info included, so pip sees torch==2.14.1 installed; the constraints file keeps it there.
set -euo pipefail
cd "$(dirname "$0")/../.."

PRODUCT=.venv
PEERS=.venv-peers
PYTHON=$(sed -n 's/^executable = //p' "$PRODUCT/pyvenv.cfg")  # the product's own interpreter
SRC=$PRODUCT/lib/python3.11/site-packages
DST=$PEERS/lib/python3.11/site-packages

if ! command -v tesseract >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr >/dev/null
fi
[ -x "$PEERS/bin/python" ] || "$PYTHON" -m venv "$PEERS"

# torch and what it needs at import time (its CUDA wheels, triton), with their dist-info.
for info in "$SRC"/{torch,torchvision,triton,nvidia_*,cuda_*}-*.dist-info; do
    [ -e "$DST/$(basename "$info")" ] && continue
    cp -al "$info" "$DST/"
    # top-level entries this distribution installed (skip ../ scripts and the dist-info itself)
    for top in $(cut -d, -f1 "$info/RECORD" | cut -d/ -f1 | sort -u | grep -v -e '^\.\.$' -e 'dist-info$'); do
        [ -e "$SRC/$top" ] && cp -al "$SRC/$top" "$DST/" 2>/dev/null || true
    done
done

cat > "$PEERS/constraints.txt" <<PINS
torch==2.14.1
torchvision==0.29.1
PINS
"$PEERS/bin/pip" install -q -c "$PEERS/constraints.txt" -r bench/peers/requirements.txt
"$PEERS/bin/python" -c "import torch, easyocr, rapidocr, pytesseract; print('peers ok: torch', torch.__version__)"
tesseract --version | head -1
