#!/usr/bin/env bash
# Every block-scale method, with and without GPTQ, on full-size DeepSeek V4-Flash layers: the FP8
# attention and shared-expert weights of `fp4kit synth v4-flash:layers=2,experts=8` requantized with
# `convert --recipe all-linear --weight-only` (the routed experts are the lossless MXFP4 cast in every
# row), then `eval --device cuda` against the source on ids the calibration did not see: KLD, top-1,
# and what convert took. Run on the GPU machine after scripts/gpu-check.sh:
#   bench/methods_fullsize_gpu.sh [FP4KIT] [WORKDIR]      (CALIB_DEVICE=cpu calibrates on the CPU)
# Calibration: 8 sequences of 256 random ids with full XᵀX per linear (`calibrate --hessian-mode
# full`), which `--scales hessian` (its 16×16 diagonal blocks) and `--gptq` read; GPTQ on the GPU.
# Evaluation: 4 other sequences of 256 ids. Synthetic weights and random ids: the ranking of the
# methods is what this measures, not a real model's quality.
set -euo pipefail
FP4KIT=${1:-build-gpu/fp4kit}
WORK=${2:-$(mktemp -d)}
mkdir -p "$WORK"
SRC=$WORK/src
rm -rf "$SRC"
"$FP4KIT" synth v4-flash:layers=2,experts=8 "$SRC" --quiet
python3 - "$WORK" <<'PY'
import random, sys
rng = random.Random(20261205)
for name, n in (("calib.ids", 8), ("eval.ids", 4)):
    with open(f"{sys.argv[1]}/{name}", "w") as f:
        for _ in range(n):
            f.write(" ".join(["0"] + [str(rng.randrange(2, 100000)) for _ in range(255)]) + "\n")
PY
start=$(date +%s.%N)
"$FP4KIT" calibrate "$SRC" --data "$WORK/calib.ids" --samples 8 --seq-len 256 --device "${CALIB_DEVICE:-cuda}" \
  --out "$WORK/amax.safetensors" --hessian "$WORK/xtx" --hessian-mode full --quiet --force
echo "calibrate --hessian-mode full on ${CALIB_DEVICE:-cuda}: $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s, XᵀX $(du -sh "$WORK/xtx" | cut -f1)"
EVAL="--data $WORK/eval.ids --samples 4 --seq-len 256 --device cuda --quiet --max-kld 100 --min-top1 0 --no-attribution"
# shellcheck disable=SC2086
"$FP4KIT" eval "$SRC" --base "$SRC" $EVAL --save-base-logits "$WORK/base.safetensors" > /dev/null
printf '| %-14s | %-5s | %9s | %8s | %9s | %6s | %s |\n' "--scales" "gptq" "convert s" "verify" "mean KLD" "top-1" "99% KLD"
printf '|%s|%s|---:|---|---:|---:|---:|\n' "----------------" "-------"
for scales in max mse four-over-six hessian; do
  for gptq in no yes; do
    out="$WORK/out"
    flags="--recipe all-linear --weight-only --scales $scales --quiet"
    [ "$scales" = hessian ] || [ "$gptq" = yes ] && flags="$flags --hessian $WORK/xtx"
    [ "$scales" = hessian ] && flags="$flags --hessian-missing mse"
    [ "$gptq" = yes ] && flags="$flags --gptq --gptq-missing rtn --device cuda"
    rm -rf "$out"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$FP4KIT" convert "$SRC" "$out" $flags
    end=$(date +%s.%N)
    if "$FP4KIT" verify "$out" --source "$SRC" --quiet > /dev/null; then ok=pass; else ok=FAIL; fi
    # shellcheck disable=SC2086
    "$FP4KIT" eval "$out" --base "$SRC" $EVAL --base-logits "$WORK/base.safetensors" --json "$WORK/eval.json" > /dev/null
    python3 - "$WORK/eval.json" "$scales" "$gptq" "$start" "$end" "$ok" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = r["statistics"]
k = s["kld"]
p99 = next(p["value"] for p in k["percentiles"] if p["fraction"] == 0.99)
print(f"| {sys.argv[2]:14s} | {sys.argv[3]:5s} | {float(sys.argv[5]) - float(sys.argv[4]):9.2f} | {sys.argv[6]:8s} | "
      f"{k['mean']:9.5f} | {100 * s['top1']['value']:5.1f}% | {p99:.4f} |")
PY
  done
done
rm -rf "$WORK/out" "$SRC" "$WORK/xtx" "$WORK/base.safetensors"
