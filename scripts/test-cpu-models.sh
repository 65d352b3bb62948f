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

for cpu in Nehalem Haswell; do
  echo "== qemu-x86_64 -cpu $cpu"
  qemu-x86_64 -cpu "$cpu" "$build/fp4kit_tests" --gtest_filter="$filter" --gtest_brief=1
done
