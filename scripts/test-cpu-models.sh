#!/usr/bin/env bash
# The fast-path tests on x86 CPUs this machine is not: the Release build's test binary under
# qemu-user's x86-64 emulation of a CPU without AVX2 (Nehalem: dispatch must fall back to the scalar
# references) and of one with AVX2 but no AVX-512 (Haswell). The tests check each ISA the emulated
# CPU reports against the references and that the ISA found follows the CPU's features. Under
# emulation only correctness means anything, not speed.
#   scripts/test-cpu-models.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: test-cpu-models.sh BUILD_DIR}
if ! command -v qemu-x86_64 >/dev/null; then
  echo "qemu-x86_64 is missing (Debian: qemu-user); install it with scripts/install-deps.sh" >&2
  exit 1
fi
filter='Isa.*:*Kernels*:EngineMatmul.*:TensorError.*:SynthRandom.*:*Nvfp4Oracle*:*DeepSeekFp8*:*DeepSeekFp4*:*ScaleSearchGolden*'
# Left out: the tests that start the fp4kit binary, which runs natively and not on the emulated CPU.
filter="$filter-Isa.VersionNamesTheIsaAndAnUnusableChoiceIsSaid:Isa.TheProgramsOutputIsTheSameUnderEveryIsa:*QuantizeTensorsCommand*"

# Both CPUs at once (one emulator process each, single-threaded: two cores are used instead of one),
# each into its own log, printed in order once both are done.
logs=$(mktemp -d)
cpus=(Nehalem Haswell) pids=()
for cpu in "${cpus[@]}"; do
  qemu-x86_64 -cpu "$cpu" "$build/fp4kit_tests" --gtest_filter="$filter" --gtest_brief=1 > "$logs/$cpu.log" 2>&1 &
  pids+=($!)
done
rc=0
for i in "${!cpus[@]}"; do
  status=0
  wait "${pids[$i]}" || status=$?
  echo "== qemu-x86_64 -cpu ${cpus[$i]}"
  cat "$logs/${cpus[$i]}.log"
  [ "$status" -eq 0 ] || { echo "== qemu-x86_64 -cpu ${cpus[$i]}: exit $status"; rc=1; }
done
rm -rf "$logs"
exit $rc
