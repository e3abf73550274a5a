#!/usr/bin/env bash
# Train the runs the five shipped image models were exported from (the exact commands in their
# card.json; wbc-types-iomtnet_s-v2 also needs its pretraining command, run first), one after
# the other on CPU, niced, one torch thread each, logs under runs/.
# A run whose folder already has run.json is skipped; an interrupted one resumes from its last
# checkpoint. Then scripts/export_vision_models.sh exports, reports and quantises them.
set -euo pipefail
cd "$(dirname "$0")/.."
IOMT=${IOMT:-.venv/bin/iomt}
pretrain() {  # out-dir, then the options
  local out=$1
  shift
  if [[ -f "$out/backbone.pt" ]]; then echo "== skip $out (backbone.pt exists)"; return; fi
  echo "== $(date -u +%H:%M:%S) $out"
  nice -n 10 "$IOMT" vision pretrain "$@" --img-size 128 --threads 1 --out "$out"
}
train() {  # out-dir, then the task's own options
  local out=$1
  shift
  if [[ -f "$out/run.json" ]]; then echo "== skip $out (run.json exists)"; return; fi
  echo "== $(date -u +%H:%M:%S) $out"
  nice -n 10 "$IOMT" vision train "$@" --patience 100 --threads 1 --out "$out" --resume --no-progress
}
# wbc-types (v2): backbone pretrained leave-target-out on blood/leukemia + blood/cell-boxes
# crops, then v1's command with --init (won on validation macro-F1, 0.975 vs 0.918)
pretrain runs/pretrain/blood-wbc-types-iomtnet_s-128 --target blood/wbc-types \
  --arch iomtnet_s --epochs 8
train runs/pt/blood-wbc-types-iomtnet_s-128-init --task blood/wbc-types \
  --data ../shared/data/blood/wbc-types --arch iomtnet_s --img-size 128 --epochs 60 \
  --init runs/pretrain/blood-wbc-types-iomtnet_s-128
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

# Leave-target-out pretraining experiment (benchmarks/vision/README.md, "Pretraining"): the
# other tasks' fine-tuned runs (none won on validation, none exported) and the from-scratch
# wbc-types run (v1) they are compared with; run them with PRETRAIN_EXPERIMENT=1.
if [[ "${PRETRAIN_EXPERIMENT:-0}" == 1 ]]; then
  chest=runs/pretrain/chest-ct-covid+lus-iomtnet_s-128  # ct-covid and lus both left out
  pretrain "$chest" --target chest/ct-covid --also-exclude chest/lus --arch iomtnet_s --epochs 8
  for lr in 3e-3 1e-3; do
    sfx=$([[ $lr == 3e-3 ]] && echo "" || echo "-lr$lr")
    train "runs/pt/chest-ct-covid-iomtnet_s-128-bg-init$sfx" --task chest/ct-covid \
      --data ../shared/data/chest/ct-covid --arch iomtnet_s --img-size 128 --epochs 40 \
      --balance-groups --lr "$lr" --init "$chest"
    train "runs/pt/chest-lus-iomtnet_s-128-bg-init$sfx" --task chest/lus \
      --data ../shared/data/chest/lus --arch iomtnet_s --img-size 128 --epochs 40 \
      --balance-groups --lr "$lr" --init "$chest"
  done
  pretrain runs/pretrain/chest-cxr-covid-iomtnet_s-128 --target chest/cxr-covid \
    --arch iomtnet_s --epochs 8
  train runs/pt/chest-cxr-covid-iomtnet_s-128-init --task chest/cxr-covid \
    --data ../shared/data/chest/cxr-covid --arch iomtnet_s --img-size 128 --epochs 35 \
    --init runs/pretrain/chest-cxr-covid-iomtnet_s-128
  pretrain runs/pretrain/blood-leukemia-iomtnet-128 --target blood/leukemia --arch iomtnet \
    --epochs 10
  train runs/pt/blood-leukemia-iomtnet-128-init --task blood/leukemia \
    --data ../shared/data/blood/leukemia --arch iomtnet --img-size 128 --epochs 30 \
    --init runs/pretrain/blood-leukemia-iomtnet-128
  train runs/blood-wbc-types-iomtnet_s-128 --task blood/wbc-types \
    --data ../shared/data/blood/wbc-types --arch iomtnet_s --img-size 128 --epochs 60
fi
echo "== $(date -u +%H:%M:%S) done"
