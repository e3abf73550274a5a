#!/usr/bin/env bash
# Train the five shipped image models one after the other (smallest data set first), on CPU,
# niced, with logs under runs/. Each run folder ends with run.json / eval.json (held-out test).
# Export afterwards with scripts/export_vision_models.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
IOMT=${IOMT:-.venv/bin/iomt}
ARCH=${ARCH:-iomtnet_s}
SIZE=${SIZE:-128}
run() {  # task epochs
  local task=$1 epochs=$2 out="runs/${1//\//-}-${ARCH}-${SIZE}"
  echo "== $(date -u +%H:%M:%S) $task -> $out"
  nice -n 10 "$IOMT" vision train --task "$task" --data "../shared/data/$task" --arch "$ARCH" \
    --img-size "$SIZE" --epochs "$epochs" --patience 12 --out "$out" --resume --no-progress
}
run blood/wbc-types 40
run chest/lus 30
run chest/ct-covid 35
run blood/leukemia 30
run chest/cxr-covid 30
echo "== $(date -u +%H:%M:%S) done"
