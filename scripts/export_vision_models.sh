#!/usr/bin/env bash
# Export the five trained runs (scripts/train_vision_models.sh) to models/<id>/ with
# model.onnx, card.json and MODEL_CARD.md; make the int8 variant with the serving side's
# `iomt vision quantize` (calibrated on the run's train split, judged on its test split, used
# only where it holds accuracy); write each run's HTML report under runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
IOMT=${IOMT:-.venv/bin/iomt}
ARCH=${ARCH:-iomtnet_s}
export_one() {  # run-folder model-id [version]
  local run=$1 id=$2 version=${3:-1}
  if [[ ! -f "$run/run.json" ]]; then echo "== $run not finished, skipped"; return; fi
  echo "== $(date -u +%H:%M:%S) $run -> models/$id"
  nice -n 10 "$IOMT" vision export --run "$run" --out "models/$id" --id "$id" --version "$version"
  cp "$run/best.pt" "models/$id/model.pt"  # the state dict the ONNX file was exported from
  nice -n 10 "$IOMT" vision report --run "$run" --out "$run/report.html"
  local data
  data=$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['config']['data'])" "$run/run.json")
  IOMT_MODELS_DIR=models nice -n 10 "$IOMT" vision quantize --model "models/$id" --data "$data" \
    --split-file "$run/split.json" --threads 1 || echo "== int8 quantisation failed for $id"
  local notes=()
  if [[ -f "scripts/model_notes/$id.md" ]]; then notes=(--notes "scripts/model_notes/$id.md"); fi
  "$IOMT" vision card --dir "models/$id" "${notes[@]}"
}
# v2, fine-tuned from a leave-target-out pretrained backbone, chosen over the from-scratch v1
# (runs/blood-wbc-types-${ARCH}-128) by validation macro-F1 (0.975 vs 0.918)
export_one "runs/pt/blood-wbc-types-${ARCH}-128-init" "wbc-types-${ARCH}-v2" 2
# chosen over the run without --balance-groups by validation macro-F1 (0.494 vs 0.473)
export_one "runs/chest-lus-${ARCH}-128-bg" "lus-${ARCH}-v1"
# chosen over the run without --balance-groups by validation AUC (0.837 vs 0.829)
export_one "runs/chest-ct-covid-${ARCH}-128-bg" "ct-covid-${ARCH}-v1"
# the wider iomtnet was chosen over iomtnet_s by validation score (0.805 vs 0.703)
export_one "runs/blood-leukemia-iomtnet-128" "leukemia-iomtnet-v1"
export_one "runs/chest-cxr-covid-${ARCH}-128" "cxr-covid-${ARCH}-v1"
