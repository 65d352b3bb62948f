#!/usr/bin/env bash
# A change measured against the tree before it on one GPU machine, in one go: this tree (A) and a
# copy of it with PATCH reverse-applied (B: the tree before the change) are built side by side, A's
# GPU tests run (and those matching SAN_FILTER under compute-sanitizer's memcheck), then the decode
# benchmarks alternate A, B, A: the serve load (1, 8 and 32 clients, bench/serve_load_gpu.sh) and the
# device timeline of a batch-1 decode step (bench/serve_timeline_gpu.sh). Results in OUT_DIR.
#   git diff BASE HEAD -- src > .ref-src/change.diff
#   scripts/gpu-ab.sh .ref-src/change.diff [OUT_DIR]
# Environment: TEST_FILTER (gtest filter of the GPU tests; default every CUDA test), SAN_FILTER
# (default none), PRESET (default v4-flash:layers=2), MAX_TOKENS (default 16), SKIP_TESTS=1.
set -uo pipefail
cd "$(dirname "$0")/.."
patch_file=$(realpath "${1:?usage: scripts/gpu-ab.sh PATCH [OUT_DIR]}")
out=$(realpath -m "${2:-${OUT:-gpu-ab-results}}")
mkdir -p "$out"
preset=${PRESET:-v4-flash:layers=2}

# shellcheck source=scripts/gpu-deps-env.sh
source scripts/gpu-deps-env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

base=${TMPDIR:-/tmp}/fp4kit-ab-base
rm -rf "$base" && mkdir -p "$base"
tar --exclude='./build*' --exclude='./.gpu-deps' --exclude='./.git' --exclude='./gpu-*results*' -cf - . | tar -xf - -C "$base"
(cd "$base" && git apply -R "$patch_file") || { echo "the patch does not reverse-apply to this tree"; exit 2; }

build() {  # DIR BUILD_DIR TARGETS...
  local dir=$1 bdir=$2
  shift 2
  cmake -S "$dir" -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFP4KIT_CUDA=ON -DFP4KIT_CUDA_ARCHS=90a "${gpu_deps_cmake_args[@]}" &&
    cmake --build "$bdir" -j "$(( $(nproc) / 2 ))" --target "$@"
}
start=$(date +%s)
# B builds no tests: they are A's, and may use what only A has.
build . "$PWD/build-gpu" fp4kit fp4kit_tests gpu_kernels_bench cuda_timeline > "$out/build-a.log" 2>&1 & a=$!
build "$base" "$base/build-gpu" fp4kit gpu_kernels_bench cuda_timeline > "$out/build-b.log" 2>&1 & b=$!
wait $a; rc_a=$?; wait $b; rc_b=$?
echo "== builds: A rc=$rc_a, B rc=$rc_b, $(( $(date +%s) - start )) s" | tee -a "$out/gpu.txt"
[ $rc_a -eq 0 ] || { grep -E "error" -A3 "$out/build-a.log" | head -40; exit 1; }
[ $rc_b -eq 0 ] || { grep -E "error" -A3 "$out/build-b.log" | head -40; exit 1; }

rc=0
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  build-gpu/fp4kit_tests --gtest_filter="${TEST_FILTER:-*Cuda*:*Gptq*:*Gpu*:WeightGemmArguments.*:MoeExperts*}" \
    > "$out/tests.log" 2>&1
  rc=$?
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran" "$out/tests.log" | head -30
  echo "== tests rc=$rc" | tee -a "$out/gpu.txt"
  if [ -n "${SAN_FILTER:-}" ]; then
    compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/fp4kit_tests --gtest_filter="$SAN_FILTER" \
      > "$out/memcheck.log" 2>&1
    echo "== memcheck rc=$? ($(grep -c '^\[       OK' "$out/memcheck.log") tests passed; $(grep -o 'ERROR SUMMARY: [0-9]* errors' "$out/memcheck.log" | tail -1))" |
      tee -a "$out/gpu.txt"
  fi
fi

# One synthetic checkpoint for every run (writing it takes longer than a run).
export MODEL=${TMPDIR:-/tmp}/fp4kit-ab-model
rm -rf "$MODEL"
build-gpu/fp4kit synth "$preset" "$MODEL" --quiet || { echo "synth $preset failed"; exit 1; }
for side in A B A2; do
  dir=$PWD
  [ "$side" = B ] && dir=$base
  echo "== serve load $side" | tee -a "$out/gpu.txt"
  (cd "$dir" && SAMPLE_ON=device MAX_TOKENS=${MAX_TOKENS:-16} timeout 200 bench/serve_load_gpu.sh build-gpu/fp4kit "$preset") \
    > "$out/serve-$side.txt" 2>&1
  tail -5 "$out/serve-$side.txt" | tee -a "$out/gpu.txt"
  [ "$side" = A2 ] && continue
  echo "== timeline $side" | tee -a "$out/gpu.txt"
  (cd "$dir" && CLIENTS=1 MAX_TOKENS=32 timeout 200 bench/serve_timeline_gpu.sh build-gpu "$preset" "$out/timeline-$side.csv") \
    > "$out/timeline-$side.txt" 2>&1
  sed -n '1,40p' "$out/timeline-$side.txt" | tee -a "$out/gpu.txt"
  gzip -f "$out/timeline-$side.csv" 2>/dev/null
done
rm -rf "$MODEL"
echo "== total $(( $(date +%s) - start )) s" | tee -a "$out/gpu.txt"
exit $rc
