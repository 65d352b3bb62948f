#!/usr/bin/env bash
# A change measured against the tree before it on one GPU machine, in one go: this tree (A) is built,
# its binaries kept aside, then PATCH is reverse-applied in place (B: the tree before the change) and
# the build redone incrementally (only what the change touched recompiles), while A's GPU tests run
# (and those matching SAN_FILTER under compute-sanitizer's memcheck). The patch is applied again at
# the end. Then the decode benchmarks alternate A, B, A: the serve load (1, 8 and 32 clients,
# bench/serve_load_gpu.sh) and the device timeline of a batch-1 decode step
# (bench/serve_timeline_gpu.sh). Results in OUT_DIR.
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
git apply -R --check "$patch_file" || { echo "the patch does not reverse-apply to this tree"; exit 2; }

bins=${TMPDIR:-/tmp}/fp4kit-ab
rm -rf "$bins" && mkdir -p "$bins/A" "$bins/B"
keep() {  # SIDE: the benchmarks' binaries of the tree as it is now
  cp build-gpu/fp4kit build-gpu/gpu_kernels_bench build-gpu/libcuda_timeline.so "$bins/$1/"
}
start=$(date +%s)
gpu_build "$out/build-a.log" fp4kit fp4kit_tests gpu_kernels_bench cuda_timeline || exit 1
keep A
echo "== build A: $(( $(date +%s) - start )) s" | tee -a "$out/gpu.txt"
cp build-gpu/fp4kit_tests "$bins/A/"

tests() {
  local rc
  FP4KIT_BINARY=$bins/A/fp4kit "$bins/A/fp4kit_tests" --gtest_filter="${TEST_FILTER:-*Cuda*:*Gptq*:*Gpu*:WeightGemmArguments.*:MoeExperts*}" \
    > "$out/tests.log" 2>&1
  rc=$?
  echo "== tests rc=$rc" >> "$out/gpu.txt"
  if [ -n "${SAN_FILTER:-}" ]; then
    FP4KIT_BINARY=$bins/A/fp4kit gpu_memcheck "$bins/A/fp4kit_tests" "$SAN_FILTER" "$out/memcheck.log" "$out/gpu.txt" > /dev/null
  fi
  return $rc
}
rc=0
t=""
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  tests &
  t=$!
fi

# B: the tree before the change, rebuilt incrementally; the change is put back whatever happens.
git apply -R "$patch_file" || exit 2
trap 'git apply "$patch_file"' EXIT
start=$(date +%s)
gpu_build "$out/build-b.log" fp4kit gpu_kernels_bench cuda_timeline || exit 1
keep B
git apply "$patch_file" && trap - EXIT
echo "== build B (incremental): $(( $(date +%s) - start )) s" | tee -a "$out/gpu.txt"
if [ -n "$t" ]; then
  wait "$t"; rc=$?
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran" "$out/tests.log" | head -30
  grep -E "^== (tests|memcheck)" "$out/gpu.txt"
fi

# One synthetic checkpoint for every run (writing it takes longer than a run).
export MODEL=${TMPDIR:-/tmp}/fp4kit-ab-model
rm -rf "$MODEL"
"$bins/A/fp4kit" synth "$preset" "$MODEL" --quiet || { echo "synth $preset failed"; exit 1; }
for side in A B A2; do
  dir=$bins/${side%2}
  echo "== serve load $side" | tee -a "$out/gpu.txt"
  SAMPLE_ON=device MAX_TOKENS=${MAX_TOKENS:-16} timeout 200 bench/serve_load_gpu.sh "$dir/fp4kit" "$preset" \
    > "$out/serve-$side.txt" 2>&1
  tail -5 "$out/serve-$side.txt" | tee -a "$out/gpu.txt"
  [ "$side" = A2 ] && continue
  echo "== timeline $side" | tee -a "$out/gpu.txt"
  CLIENTS=1 MAX_TOKENS=32 timeout 200 bench/serve_timeline_gpu.sh "$dir" "$preset" "$out/timeline-$side.csv" \
    > "$out/timeline-$side.txt" 2>&1
  sed -n '1,40p' "$out/timeline-$side.txt" | tee -a "$out/gpu.txt"
  gzip -f "$out/timeline-$side.csv" 2>/dev/null
done
rm -rf "$MODEL"
echo "== total $(( $(date +%s) - start )) s" | tee -a "$out/gpu.txt"
exit $rc
