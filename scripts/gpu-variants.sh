#!/usr/bin/env bash
# Kernel variants measured side by side on one GPU machine: this tree is built and its kernel
# benchmark run, then for each PATCH the patch is applied, the benchmark rebuilt incrementally (only
# what the patch touched recompiles), run, and the patch taken back; last, this tree's benchmark again
# (A, V1, V2, …, A: the spread of A's two runs is the noise). With TEST_FILTER, each variant's GPU
# tests matching it run too (a variant that fails them is reported, and its timings are not to be
# kept). AGAIN=0 leaves out the last run of this tree. Results in OUT_DIR: bench-NAME.txt,
# tests-NAME.log, a summary in gpu.txt.
#   BENCH_ARGS='--only ceilings,gemm --m 1 --quick' scripts/gpu-variants.sh OUT_DIR [PATCH...]
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:?usage: scripts/gpu-variants.sh OUT_DIR [PATCH...]}")
shift
patches=()
for p in "$@"; do patches+=("$(realpath "$p")"); done
mkdir -p "$out"
read -r -a bench_args <<< "${BENCH_ARGS:---only ceilings,gemm --m 1 --quick}"

# shellcheck source=scripts/gpu-deps-env.sh
source scripts/gpu-deps-env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
targets=(gpu_kernels_bench)
[ -n "${TEST_FILTER:-}" ] && targets+=(fp4kit_tests)

# run NAME: the benchmark (and the tests) of the tree as it is now.
run() {
  local name=$1 start rc
  start=$(date +%s)
  gpu_build "$out/build-$name.log" "${targets[@]}" || { echo "== $name: build failed" | tee -a "$out/gpu.txt"; return 1; }
  echo "== $name: built in $(( $(date +%s) - start )) s" | tee -a "$out/gpu.txt"
  if [ -n "${TEST_FILTER:-}" ]; then
    build-gpu/fp4kit_tests --gtest_filter="$TEST_FILTER" > "$out/tests-$name.log" 2>&1
    rc=$?
    echo "== $name: tests rc=$rc ($(grep -E '^\[  PASSED|^\[  FAILED' "$out/tests-$name.log" | tr '\n' ' '))" | tee -a "$out/gpu.txt"
  fi
  timeout "${BENCH_TIMEOUT:-240}" build-gpu/gpu_kernels_bench "${bench_args[@]}" > "$out/bench-$name.txt" 2>&1
  echo "== $name: bench rc=$?" | tee -a "$out/gpu.txt"
}

run A || exit 1
i=0
for p in "${patches[@]}"; do
  i=$((i + 1))
  name=V$i-$(basename "$p" .diff)
  git apply --check "$p" || { echo "== $name: does not apply" | tee -a "$out/gpu.txt"; continue; }
  git apply "$p"
  trap 'git apply -R "$p"' EXIT
  run "$name"
  git apply -R "$p" && trap - EXIT
done
[ ${#patches[@]} -gt 0 ] && [ "${AGAIN:-1}" = 1 ] && run A2
exit 0
