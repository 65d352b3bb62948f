#!/usr/bin/env bash
# Calibration on the GPU over a synthetic full-size DeepSeek V4 layer stack: where each layer's time
# goes (waiting for the disk, copying to the device, computing, writing the resume state), tokens/s,
# device memory and host RSS. Run after scripts/gpu-check.sh built build-gpu/ (same machine):
#
#   scripts/gpu-fullsize.sh OUT_DIR [PRESET] [SAMPLES] [SEQ_LEN]
#
# PRESET is an `fp4kit synth` preset (default v4-flash:layers=3: three full-size V4-Flash layers,
# 256 experts each). Writes OUT_DIR/fullsize-<name>-{routed,all}.json and .log; the model lives in
# $TMPDIR and is removed at the end. MODES (default "routed all") picks the calibrations run. With TRANSFORMERS_LAYERS=N (N > 0) it also times transformers'
# own BF16 forward of the first N layers of the same config (scripts/reference/layer_timing.py,
# 16 x 512 tokens, weights resident) into OUT_DIR/transformers-<name>.json. With COMPARE=1 it converts
# the model (--recipe all-linear --weight-only: every linear requantized to NVFP4) and compares the two
# on the GPU (4 x 256 tokens) into OUT_DIR/compare-<name>.json. With EVAL=1 it evaluates that
# conversion against the model on the GPU (EVAL_SAMPLES x 512 tokens, default 16; both models side by
# side, each layer's residual error) into OUT_DIR/eval-<name>.{json,html,log}. With GENERATE=N it times
# greedy generation on the GPU after the first 512-token sample (BF16, the caches on the device):
# one token, then 1 + N tokens (generate prints the prompt's and the decode's time), and the same
# without the caches (--no-cache, every step reruns the sequence) into OUT_DIR/generate-<name>.txt.
# GPU_MEMORY passes --gpu-memory to calibrate.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-results}}
preset=${2:-v4-flash:layers=3}
samples=${3:-128}
seq=${4:-512}
name=$(echo "$preset" | tr ':=,' '---')
mkdir -p "$out"
bin=build-gpu/fp4kit
model=${TMPDIR:-/tmp}/fp4kit-fullsize-model
rm -rf "$model"
start=$(date +%s)
$bin synth "$preset" "$model" --quiet || exit 1
echo "synth $preset: $(( $(date +%s) - start )) s, $(du -sh "$model" | cut -f1)"
awk -v n="$samples" -v l="$seq" 'BEGIN { srand(11); for (s = 0; s < n; s++) { r = ""; for (i = 0; i < l; i++) r = r (i ? " " : "") int(1 + rand() * 100000); print r } }' \
  > "$model.ids"
rc=0
for mode in ${MODES:-routed all}; do
  flags=""; [ $mode = all ] && flags="--all-experts"
  # shellcheck disable=SC2086
  /usr/bin/time -f "peak host RSS %M KiB, wall %e s" timeout "${FULLSIZE_TIMEOUT:-240}" $bin calibrate "$model" \
    --data "$model.ids" --samples "$samples" --seq-len "$seq" --device cuda $flags ${GPU_MEMORY:+--gpu-memory "$GPU_MEMORY"} \
    --out "$model.amax.safetensors" --force \
    --json "$out/fullsize-$name-$mode.json" > "$out/fullsize-$name-$mode.log" 2>&1
  rc=$(( rc | $? ))
  tail -6 "$out/fullsize-$name-$mode.log"
done
if [ "${TRANSFORMERS_LAYERS:-0}" -gt 0 ]; then
  timeout "${FULLSIZE_TIMEOUT:-240}" python3 scripts/reference/layer_timing.py "$model" "$out/transformers-$name.json" \
    --layers "$TRANSFORMERS_LAYERS" > "$out/transformers-$name.log" 2>&1
  rc=$(( rc | $? ))
  tail -4 "$out/transformers-$name.log"
fi
if [ "${COMPARE:-0}" = 1 ] || [ "${EVAL:-0}" = 1 ]; then
  start=$(date +%s)
  $bin convert "$model" "$model.nvfp4" --recipe all-linear --weight-only --quiet || rc=1
  echo "convert --recipe all-linear --weight-only: $(( $(date +%s) - start )) s"
fi
if [ "${EVAL:-0}" = 1 ]; then
  # Exit 1 is a FAIL verdict against the default thresholds (a random synthetic model): still a result.
  /usr/bin/time -f "peak host RSS %M KiB, wall %e s" timeout "${FULLSIZE_TIMEOUT:-240}" $bin eval "$model.nvfp4" \
    --base "$model" --data "$model.ids" --samples "${EVAL_SAMPLES:-16}" --seq-len 512 --device cuda \
    --json "$out/eval-$name.json" --html "$out/eval-$name.html" > "$out/eval-$name.log" 2>&1
  erc=$?
  [ $erc -gt 1 ] && rc=1
  grep -E "Mean KLD|Same top-1|PASS|WARN|FAIL|wall" "$out/eval-$name.log" | head -8
fi
if [ "${COMPARE:-0}" = 1 ]; then
  head -4 "$model.ids" | cut -d' ' -f1-256 > "$model.compare.ids"
  /usr/bin/time -f "peak host RSS %M KiB, wall %e s" $bin compare "$model" "$model.nvfp4" --ids-file "$model.compare.ids" \
    --device cuda --json > "$out/compare-$name.json" 2> "$out/compare-$name.log"
  rc=$(( rc | $? ))
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('compare:', d['summary'])" "$out/compare-$name.json"
  tail -1 "$out/compare-$name.log"
  rm -rf "$model.nvfp4" "$model.compare.ids"
fi
if [ "${GENERATE:-0}" -gt 0 ]; then
  head -1 "$model.ids" > "$model.prompt.ids"
  n=$GENERATE
  {
    for run in "1" "$((n + 1))" "1 --no-cache" "$((n + 1)) --no-cache"; do
      start=$(date +%s.%N)
      # shellcheck disable=SC2086
      timeout "${FULLSIZE_TIMEOUT:-240}" $bin generate "$model" --ids-file "$model.prompt.ids" --device cuda \
        --ignore-eos --max-new-tokens $run > "$model.generate.log" 2>&1 || rc=1
      echo "generate --max-new-tokens $run: $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s;" \
        "$(grep -E '^prompt' "$model.generate.log" | tr '\n' ' ')"
    done
  } | tee "$out/generate-$name.txt"
  rm -f "$model.prompt.ids" "$model.generate.log"
fi
rm -rf "$model" "$model.ids" "$model.nvfp4" "$model.amax.safetensors" "$model.amax.safetensors.state"
exit $rc
