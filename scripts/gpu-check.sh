#!/usr/bin/env bash
# On a machine with a CUDA GPU, in one go: configure with CUDA, build, run the GPU tests, the kernel
# benchmark, then the GPU tests once more under compute-sanitizer's memcheck, and write everything to OUT_DIR
# (default: gpu-results/): gpu.txt (the device), build.log, tests.log, bench.txt, bench.json,
# stream.txt (a synthetic model streamed disk -> pinned memory -> GPU), run_gpu_{bf16,f32}.json,
# calibrate_gpu.json and eval_gpu.json (the GPU forward pass, calibration and eval over it, BF16),
# generate_profile.txt (`generate --profile` over it: a decode step by stage and by call),
# sanitizer.log.
# Build dependencies come from the system, or from .gpu-deps/ (scripts/gpu-deps.sh) on a machine
# without the Debian packages. Environment: FP4KIT_CUDA_ARCHS (default 90a), SKIP_SANITIZER=1,
# SKIP_BENCH=1, SKIP_STREAM=1, STREAM_PRESET (synth preset, default v4-flash:layers=6,experts=64),
# TEST_FILTER (ctest -R, default: every Cuda test), SAN_FILTER (gtest filter under the sanitizer, default
# *TEST_FILTER* with each | of the regex as a separate *pattern*), BENCH_ARGS, BENCH_TIMEOUT and SAN_TIMEOUT (seconds).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-results}}
mkdir -p "$out"
log() { echo "== $*" | tee -a "$out/gpu.txt"; }

# shellcheck source=scripts/gpu-deps-env.sh
source scripts/gpu-deps-env.sh
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv; nvcc --version | tail -2;
  g++ --version | head -1; cmake --version | head -1; nproc; } >> "$out/gpu.txt" 2>&1

log "configure + build"
start=$(date +%s)
gpu_build "$out/build.log"
rc=$?
log "build rc=$rc in $(( $(date +%s) - start )) s"
[ $rc -eq 0 ] || exit $rc

log "GPU tests"
filter=${TEST_FILTER:-Cuda}
ctest --test-dir build-gpu -R "$filter" --output-on-failure -j 1 --timeout 600 > "$out/tests.log" 2>&1
rc_tests=$?
grep -E "tests passed|tests failed|Failed|\*\*\*|SKIPPED|Not Run" "$out/tests.log" | head -40
log "tests rc=$rc_tests"

rc_bench=0
if [ "${SKIP_BENCH:-0}" != 1 ] && [ -x build-gpu/gpu_kernels_bench ]; then
  log "benchmark"
  # shellcheck disable=SC2086
  timeout "${BENCH_TIMEOUT:-900}" build-gpu/gpu_kernels_bench --json "$out/bench.json" ${BENCH_ARGS:-} > "$out/bench.txt" 2> "$out/bench.err"
  rc_bench=$?
  cat "$out/bench.txt"; tail -3 "$out/bench.err"
  log "bench rc=$rc_bench"
fi
if [ "${SKIP_STREAM:-0}" != 1 ] && [ -x build-gpu/gpu_stream_bench ]; then
  log "streaming benchmark"
  model=${TMPDIR:-/tmp}/fp4kit-stream-model
  rm -rf "$model"
  build-gpu/fp4kit synth "${STREAM_PRESET:-v4-flash:layers=6,experts=64}" "$model" --quiet &&
    timeout 300 build-gpu/gpu_stream_bench "$model" > "$out/stream.txt" 2>&1
  rc_bench=$(( rc_bench | $? ))
  cat "$out/stream.txt"
  # The forward pass on the GPU over the same model, BF16 (default) and F32: 2 sequences of 64 tokens.
  ids=$(seq 1 64 | tr '\n' ' '); ids="$ids"$'\n'"$(seq 101 164 | tr '\n' ' ')"
  for precision in bf16 f32; do
    timeout 300 build-gpu/fp4kit run "$model" --ids "$ids" --device cuda --precision $precision --json \
      > "$out/run_gpu_$precision.json" 2>&1
    rc_bench=$(( rc_bench | $? ))
    grep -E '"seconds"|tokens_per_second|layer_seconds' -A0 "$out/run_gpu_$precision.json" | head -5
  done
  # Calibration on the GPU over the same model: 8 sequences of 512 random ids.
  awk 'BEGIN { srand(7); for (s = 0; s < 8; s++) { l = ""; for (i = 0; i < 512; i++) l = l (i ? " " : "") int(1 + rand() * 100000); print l } }' \
    > "$model.ids"
  timeout 600 build-gpu/fp4kit calibrate "$model" --data "$model.ids" --samples 8 --seq-len 512 --device cuda \
    --out "$model.amax.safetensors" --force --json "$out/calibrate_gpu.json" > "$out/calibrate_gpu.log" 2>&1
  rc_bench=$(( rc_bench | $? ))
  tail -4 "$out/calibrate_gpu.log"
  # eval on the GPU, the model against itself (both streamed): tokens/s; KLD must be 0.
  timeout 600 build-gpu/fp4kit eval "$model" --base "$model" --data "$model.ids" --samples 8 --seq-len 512 --device cuda \
    --quiet --json "$out/eval_gpu.json" > "$out/eval_gpu.log" 2>&1
  rc_bench=$(( rc_bench | $? ))
  tail -2 "$out/eval_gpu.log"
  # Greedy generation from a 64-token prompt: where a decode step's time goes (device and host, by
  # stage and by call).
  timeout 300 build-gpu/fp4kit generate "$model" --ids "$(seq 2 65 | tr '\n' ' ')" --device cuda --max-new-tokens 32 \
    --ignore-eos --profile > "$out/generate_profile.txt" 2>&1
  rc_bench=$(( rc_bench | $? ))
  grep -E "decode step|sum|host time by call" "$out/generate_profile.txt"
  rm -rf "$model" "$model.ids" "$model.amax.safetensors"
fi
rc_san=0
if [ "${SKIP_SANITIZER:-0}" != 1 ] && command -v compute-sanitizer > /dev/null; then
  log "compute-sanitizer memcheck"
  # API errors are not reported: the out-of-memory tests provoke cudaMalloc failures on purpose
  # (fp4kit turns every API error into an exception, which the tests check).
  timeout "${SAN_TIMEOUT:-1800}" compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 --print-limit 20 \
    build-gpu/fp4kit_tests --gtest_filter="${SAN_FILTER:-*${filter//|/*:*}*}" > "$out/sanitizer.log" 2>&1
  rc_san=$?
  tail -5 "$out/sanitizer.log"
  log "sanitizer rc=$rc_san"
fi

[ $rc_tests -eq 0 ] && [ $rc_san -eq 0 ] && [ $rc_bench -eq 0 ]
