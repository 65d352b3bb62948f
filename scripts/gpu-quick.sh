#!/usr/bin/env bash
# A short check of one change on the GPU machine: build (Release, sm_90a), the GPU tests matching
# TEST_FILTER, those matching SAN_FILTER under compute-sanitizer's memcheck, the serve load at 1, 8
# and 32 clients (bench/serve_load_gpu.sh, PRESET) and the kernel benchmark's BENCH_ONLY parts, in
# that order, each written to OUT_DIR as it ends (a call cut short keeps what ran).
#   TEST_FILTER='CudaTokenDraw.*' SAN_FILTER='CudaTokenDraw.*' BENCH_ONLY=draw scripts/gpu-quick.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-${OUT:-gpu-quick-results}}")
mkdir -p "$out"
# shellcheck source=scripts/gpu-deps-env.sh
source scripts/gpu-deps-env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
start=$(date +%s)
gpu_build "$out/build.log" fp4kit fp4kit_tests gpu_kernels_bench || exit 1
echo "== build: $(( $(date +%s) - start )) s" | tee -a "$out/gpu.txt"
build-gpu/fp4kit_tests --gtest_filter="${TEST_FILTER:-*Cuda*}" > "$out/tests.log" 2>&1
rc=$?
echo "== tests rc=$rc" | tee -a "$out/gpu.txt"
grep -E "^\[  (PASSED|FAILED) " "$out/tests.log" | head -20 | tee -a "$out/gpu.txt"
if [ -n "${SAN_FILTER:-}" ]; then
  gpu_memcheck build-gpu/fp4kit_tests "$SAN_FILTER" "$out/memcheck.log" "$out/gpu.txt"
fi
SAMPLE_ON=device MAX_TOKENS=${MAX_TOKENS:-16} timeout 200 bench/serve_load_gpu.sh build-gpu/fp4kit "${PRESET:-v4-flash:layers=2}" \
  > "$out/serve.txt" 2>&1
tee -a "$out/gpu.txt" < "$out/serve.txt"
if [ -n "${BENCH_ONLY:-}" ]; then
  timeout 120 build-gpu/gpu_kernels_bench --only "$BENCH_ONLY" > "$out/bench.txt" 2>&1
  tee -a "$out/gpu.txt" < "$out/bench.txt"
fi
echo "== total $(( $(date +%s) - start )) s" | tee -a "$out/gpu.txt"
exit $rc
