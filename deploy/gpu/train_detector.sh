#!/usr/bin/env bash
# One leased-GPU detector run (see deploy/gpu/README.md). Runs ON the device machine, from the
# repository root, with .gpu/ carried: installs the carried wheels, fine-tunes the shipped
# detector with CUDA + AMP for MINUTES (default 5) on IC15 img_1-800, selecting on the tune
# images img_801-900, and writes the changed tensors to $OUT/detector_delta.pt (< 16 MiB).
set -euo pipefail
MINUTES=${MINUTES:-5}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/wheels/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 -m services.cli.main train detector --data .gpu/data --out runs/gpu \
    --init-from weights/clipspot-default.pt --device "${DEVICE:-cuda}" --minutes "$MINUTES" \
    --steps "${STEPS:-100000}" --batch-size "${BATCH:-32}" --crop 512 --lr "${LR:-1e-3}" \
    --synth-fraction 0 --workers "${WORKERS:-12}" 2>&1 | tr '\r' '\n' | grep -v "^detector: "
mkdir -p "${OUT:-runs/gpu/out}"
python3 deploy/gpu/detector_delta.py extract runs/gpu/best.pt weights/clipspot-default.pt \
    "${OUT:-runs/gpu/out}/detector_delta.pt"
