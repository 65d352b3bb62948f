#!/usr/bin/env bash
# Accuracy of every NVFP4 conversion of the tiny V4 checkpoint against its source, through the f32
# reference forward pass: mean / max KL(source || converted) per position, top-1 agreement and mean
# relative logit error over the fixture's 2 x 144 reference ids.
#   bench/compare_tiny.sh [FP4KIT] [WORKDIR]
# shellcheck source=bench/tiny_env.sh
source "$(dirname "$0")/tiny_env.sh"
IDS=$DATA/dsv4-tiny/reference.safetensors
variants=(
  "moe, cast (default)|--calib $CALIB"
  "moe, modelopt requant|--numerics modelopt --calib $CALIB"
  "all-linear, modelopt, cast experts|--recipe all-linear --weight-only"
  "all-linear, modelopt, requant experts|--recipe all-linear --numerics modelopt --weight-only"
  "all-linear, compressed-tensors, cast experts|--recipe all-linear --format compressed-tensors --weight-only"
  "all-linear, compressed-tensors numerics|--recipe all-linear --format compressed-tensors --numerics compressed-tensors --weight-only"
)
printf '| %-52s | %8s | %8s | %6s | %8s |\n' "recipe, format, numerics" "mean KL" "max KL" "top-1" "rel err"
printf '|%s|---:|---:|---:|---:|\n' "------------------------------------------------------"
i=0
for v in "${variants[@]}"; do
  name=${v%%|*}; flags=${v#*|}; i=$((i + 1))
  rm -rf "$WORK/out$i"
  # shellcheck disable=SC2086
  "$FP4KIT" convert "$SRC" "$WORK/out$i" $flags --quiet
  "$FP4KIT" compare "$SRC" "$WORK/out$i" --ids-file "$IDS" --json > "$WORK/cmp$i.json"
  python3 - "$WORK/cmp$i.json" "$name" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print(f"| {sys.argv[2]:52s} | {s['mean_kl']:8.4f} | {s['max_kl']:8.4f} | {100 * s['top1_agreement']:5.1f}% | {s['mean_rel_error']:8.3f} |")
PY
done
