#!/usr/bin/env bash
# Every block-scale method, with and without GPTQ, on full-size DeepSeek V4-Flash layers: the FP8
# attention and shared-expert weights of `fp4kit synth v4-flash:layers=2,experts=8` requantized with
# `convert --recipe all-linear --weight-only` (the routed experts are the lossless MXFP4 cast in every
# row), then `eval --device cuda` against the source on ids the calibration did not see: KLD, top-1,
# and what convert took. Run on the GPU machine after scripts/gpu-check.sh:
#   bench/methods_fullsize_gpu.sh [FP4KIT] [WORKDIR]      (CALIB_DEVICE=cpu calibrates on the CPU;
#   CALIB_SAMPLES: calibration sequences, default 8; METHODS: the --scales rows, default all four)
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
CALIB_SAMPLES=${CALIB_SAMPLES:-8}
python3 - "$WORK" "$CALIB_SAMPLES" <<'PY'
import random, sys
rng = random.Random(20261205)
for name, n in (("calib.ids", int(sys.argv[2])), ("eval.ids", 4)):
    with open(f"{sys.argv[1]}/{name}", "w") as f:
        for _ in range(n):
            f.write(" ".join(["0"] + [str(rng.randrange(2, 100000)) for _ in range(255)]) + "\n")
PY
start=$(date +%s.%N)
"$FP4KIT" calibrate "$SRC" --data "$WORK/calib.ids" --samples "$CALIB_SAMPLES" --seq-len 256 --device "${CALIB_DEVICE:-cuda}" \
  --out "$WORK/amax.safetensors" --hessian "$WORK/xtx" --hessian-mode full --quiet --force
echo "calibrate --hessian-mode full on ${CALIB_DEVICE:-cuda}, $CALIB_SAMPLES x 256 ids: $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s, XᵀX $(du -sh "$WORK/xtx" | cut -f1)"
EVAL="--data $WORK/eval.ids --samples 4 --seq-len 256 --device cuda --quiet --max-kld 100 --min-top1 0 --no-attribution"
# shellcheck disable=SC2086
"$FP4KIT" eval "$SRC" --base "$SRC" $EVAL --save-base-logits "$WORK/base.safetensors" > /dev/null
# shellcheck source=bench/methods_table.sh
source "$(dirname "$0")/methods_table.sh"
CONVERT_EXTRA="" GPTQ_EXTRA="--device cuda" methods_table
rm -rf "$WORK/out" "$SRC" "$WORK/xtx" "$WORK/base.safetensors"
