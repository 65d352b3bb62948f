#!/usr/bin/env bash
# Where a batch-1 decode step's time goes on this GPU machine, in one go: build (Release, sm_90a),
# the device timeline of `fp4kit serve` decoding for one client (bench/serve_timeline_gpu.sh: busy,
# idle and the host's lead per step), and Nsight Compute's kernel times of one decode pass of
# `generate` (bench/ncu_kernel_sums.py --last; each kernel finding what the one before left in L2).
# Optionally the GPU tests matching SAN_FILTER under compute-sanitizer's memcheck. Results in OUT_DIR.
#   scripts/gpu-profile.sh [OUT_DIR]      (PRESET, default v4-flash:layers=2)
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-${OUT:-gpu-profile-results}}")
mkdir -p "$out"
preset=${PRESET:-v4-flash:layers=2}
# shellcheck source=scripts/gpu-deps-env.sh
source scripts/gpu-deps-env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
start=$(date +%s)
targets=(fp4kit gpu_kernels_bench cuda_timeline)
[ -z "${SAN_FILTER:-}" ] || targets+=(fp4kit_tests)
gpu_build "$out/build.log" "${targets[@]}" || exit 1
echo "== build: $(( $(date +%s) - start )) s" | tee -a "$out/gpu.txt"

export MODEL=${TMPDIR:-/tmp}/fp4kit-profile-model
rm -rf "$MODEL"
build-gpu/fp4kit synth "$preset" "$MODEL" --quiet || { echo "synth $preset failed"; exit 1; }
echo "== timeline" | tee -a "$out/gpu.txt"
CLIENTS=1 MAX_TOKENS=32 timeout 200 bench/serve_timeline_gpu.sh build-gpu "$preset" "$out/timeline.csv" > "$out/timeline.txt" 2>&1
cat "$out/timeline.txt" | tee -a "$out/gpu.txt"
gzip -f "$out/timeline.csv"
echo "== ncu, the last of 5 passes (4-token prompt, 4 decode steps)" | tee -a "$out/gpu.txt"
timeout 300 ncu --cache-control none --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
  build-gpu/fp4kit generate "$MODEL" --ids "2 3 4 5" --device cuda --max-new-tokens 5 --ignore-eos > "$out/ncu.csv" 2> "$out/ncu.err"
python3 bench/ncu_kernel_sums.py "$out/ncu.csv" --last | tee -a "$out/gpu.txt"
gzip -f "$out/ncu.csv"
rc=0
if [ -n "${SAN_FILTER:-}" ]; then
  gpu_memcheck build-gpu/fp4kit_tests "$SAN_FILTER" "$out/memcheck.log" "$out/gpu.txt"
  rc=$?
fi
rm -rf "$MODEL"
echo "== total $(( $(date +%s) - start )) s" | tee -a "$out/gpu.txt"
exit $rc
