#!/usr/bin/env bash
# Every block-scale method, with and without GPTQ, on the tiny V4 checkpoint's FP8 attention
# (`--recipe all-linear --weight-only`, ModelOpt layout): `eval` KLD and top-1 against the source on
# ids calibration did not see, and what convert took.
#
# Calibration: 16 sequences of 96 ids drawn as the transformers oracle draws its own (BOS 0, then
# uniform in [2, 1024), fixed seed), full XᵀX per linear (`calibrate --hessian-mode full`), which
# both `--scales hessian` (its 16×16 diagonal blocks) and `--gptq` read. Evaluation: the oracle's
# 4 × 96 ids (tests/data/calib/oracle/calib_ids.safetensors), which the calibration does not contain.
# The MTP block has no statistics (calibration runs the main layers): its weights take mse scales
# under hessian (--hessian-missing mse) and plain rounding under GPTQ (--gptq-missing rtn).
#   bench/methods_tiny.sh [FP4KIT] [WORKDIR]
# shellcheck source=bench/tiny_env.sh
source "$(dirname "$0")/tiny_env.sh"
mkdir -p "$WORK"
python3 - "$WORK/calib.ids" <<'PY'
import random, sys
rng = random.Random(20261205)
with open(sys.argv[1], "w") as f:
    for _ in range(16):
        f.write(" ".join(["0"] + [str(rng.randrange(2, 1024)) for _ in range(95)]) + "\n")
PY
"$FP4KIT" calibrate "$SRC" --data "$WORK/calib.ids" --out "$WORK/amax.safetensors" --hessian "$WORK/xtx" \
  --hessian-mode full --quiet --force
EVAL="--data $DATA/calib/oracle/calib_ids.safetensors --samples 4 --seq-len 96 --quiet --max-kld 1 --min-top1 0 --no-attribution"
"$FP4KIT" eval "$SRC" --base "$SRC" $EVAL --save-base-logits "$WORK/base.safetensors" > /dev/null
# shellcheck source=bench/methods_table.sh
source "$(dirname "$0")/methods_table.sh"
CONVERT_EXTRA="--threads 2" GPTQ_EXTRA="" methods_table

# The tiny DeepSeek V3 (FP8 blocks) and Llama (BF16) fixtures: the engine runs V4 only, so neither
# calibration (hessian, GPTQ) nor eval applies; the weight SQNR that `verify --source` measures, mean
# and worst over the requantized tensors.
echo
printf '| %-10s | %-14s | %7s | %15s | %14s |\n' "model" "--scales" "tensors" "mean SQNR (dB)" "worst SQNR (dB)"
printf '|%s|%s|---:|---:|---:|\n' "------------" "----------------"
for family in dsv3-tiny llama-tiny; do
  for scales in max mse four-over-six; do
    out="$WORK/$family-$scales"
    rm -rf "$out"
    "$FP4KIT" convert "$DATA/families/$family" "$out" --recipe all-linear --weight-only --scales "$scales" --quiet
    "$FP4KIT" verify "$out" --source "$DATA/families/$family" --json "$WORK/verify.json" --quiet > /dev/null
    python3 - "$WORK/verify.json" "$family" "$scales" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = [x for x in r["tensors_numerics"] if x["compared"] and not x["expected_exact"]]
mean = sum(x["sqnr_db"] for x in t) / len(t)
print(f"| {sys.argv[2]:10s} | {sys.argv[3]:14s} | {len(t):7d} | {mean:15.3f} | {min(x['sqnr_db'] for x in t):14.3f} |")
PY
  done
done
