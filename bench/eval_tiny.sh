#!/usr/bin/env bash
# `fp4kit eval` of NVFP4 conversions of the tiny V4 checkpoint against its source on the CPU: tokens
# evaluated per second (4 x 96 calibration ids, both models; with per-layer attribution, without it,
# and with the base logits read from a file), and the headline statistics.
#   bench/eval_tiny.sh [FP4KIT] [WORKDIR]
# shellcheck source=bench/tiny_env.sh
source "$(dirname "$0")/tiny_env.sh"
IDS="--data $DATA/calib/oracle/calib_ids.safetensors --samples 4 --seq-len 96 --quiet --max-kld 1 --min-top1 0"
variants=(
  "moe, cast (default)|--calib $CALIB"
  "moe, modelopt requant|--numerics modelopt --calib $CALIB"
  "all-linear, compressed-tensors|--recipe all-linear --format compressed-tensors --weight-only"
)
printf '| %-34s | %-28s | %8s | %10s | %8s | %6s |\n' "conversion" "mode" "s" "tokens/s" "mean KLD" "top-1"
printf '|%s|%s|---:|---:|---:|---:|\n' "------------------------------------" "------------------------------"
i=0
for v in "${variants[@]}"; do
  name=${v%%|*}; flags=${v#*|}; i=$((i + 1))
  rm -rf "$WORK/out$i"
  # shellcheck disable=SC2086
  "$FP4KIT" convert "$SRC" "$WORK/out$i" $flags --quiet
  for mode in "attribution|--save-base-logits $WORK/base$i.safetensors" "--no-attribution|--no-attribution" \
              "--base-logits (file)|--base-logits $WORK/base$i.safetensors"; do
    label=${mode%%|*}; extra=${mode#*|}
    # shellcheck disable=SC2086
    "$FP4KIT" eval "$WORK/out$i" --base "$SRC" $IDS $extra --json "$WORK/eval$i.json" > /dev/null
    python3 - "$WORK/eval$i.json" "$name" "$label" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = r["statistics"]
print(f"| {sys.argv[2]:34s} | {sys.argv[3]:28s} | {r['seconds']:8.3f} | {r['tokens_per_second']:10.1f} | {s['kld']['mean']:8.4f} | {100 * s['top1']['value']:5.1f}% |")
PY
  done
done
