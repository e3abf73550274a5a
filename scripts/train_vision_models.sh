#!/usr/bin/env bash
# Train the runs the five shipped image models were exported from (the exact commands in their
# card.json), one after the other on CPU, niced, one torch thread each, logs under runs/.
# A run whose folder already has run.json is skipped; an interrupted one resumes from its last
# checkpoint. Then scripts/export_vision_models.sh exports, reports and quantises them.
set -euo pipefail
cd "$(dirname "$0")/.."
IOMT=${IOMT:-.venv/bin/iomt}
train() {  # out-dir, then the task's own options
  local out=$1
  shift
  if [[ -f "$out/run.json" ]]; then echo "== skip $out (run.json exists)"; return; fi
  echo "== $(date -u +%H:%M:%S) $out"
  nice -n 10 "$IOMT" vision train "$@" --patience 100 --threads 1 --out "$out" --resume --no-progress
}
train runs/blood-wbc-types-iomtnet_s-128 --task blood/wbc-types \
  --data ../shared/data/blood/wbc-types --arch iomtnet_s --img-size 128 --epochs 60
train runs/chest-lus-iomtnet_s-128-bg --task chest/lus --data ../shared/data/chest/lus \
  --arch iomtnet_s --img-size 128 --epochs 40 --balance-groups
train runs/chest-ct-covid-iomtnet_s-128-bg --task chest/ct-covid \
  --data ../shared/data/chest/ct-covid --arch iomtnet_s --img-size 128 --epochs 40 --balance-groups
# The small leukemia run fixes the patient split that the shipped, wider model reuses.
train runs/blood-leukemia-iomtnet_s-128 --task blood/leukemia \
  --data ../shared/data/blood/leukemia --arch iomtnet_s --img-size 128 --epochs 40
train runs/blood-leukemia-iomtnet-128 --task blood/leukemia --data ../shared/data/blood/leukemia \
  --arch iomtnet --img-size 128 --epochs 30 --split-from runs/blood-leukemia-iomtnet_s-128/split.json
train runs/chest-cxr-covid-iomtnet_s-128 --task chest/cxr-covid \
  --data ../shared/data/chest/cxr-covid --arch iomtnet_s --img-size 128 --epochs 35
echo "== $(date -u +%H:%M:%S) done"
