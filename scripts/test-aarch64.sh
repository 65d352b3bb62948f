#!/usr/bin/env bash
# The aarch64 build: cross-compiled with Debian's aarch64-linux-gnu g++ against the arm64 packages
# (multiarch), its tests run under qemu-user (no binfmt_misc needed). Run from the repository root
# of a Debian 12 x86-64 machine; installs what is missing first. Selection and times: see below.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

host_packages=(cmake ninja-build g++-aarch64-linux-gnu qemu-user nlohmann-json3-dev libcli11-dev)
arm64_packages=(libhwy-dev libxxhash-dev libgtest-dev libcpp-httplib-dev)
missing=()
for p in "${host_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
for p in "${arm64_packages[@]}"; do dpkg -s "$p:arm64" >/dev/null 2>&1 || missing+=("$p:arm64"); done
if [ ${#missing[@]} -gt 0 ]; then
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  dpkg --print-foreign-architectures | grep -qx arm64 || "${as_root[@]}" dpkg --add-architecture arm64
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The test files built and run: those whose code has a path per ISA (every format test, verify's
# error sums, the matmul and the tiny forward pass against transformers, the conversions and dequant
# compared with ModelOpt's and DeepSeek's bytes, the random fill, the ISA choice). The other suites
# have no ISA-dependent code; they run natively in the x86 stages, and under emulation they would
# double CI's time (measured on the 2-core VM: all of formats, io, verify, engine and convert took
# about 4.5 minutes here and their build 5.5; this selection about 1.5 and 3.5).
tests_regex='/tests/(formats/[^/]*|verify/tensor_error|engine/(matmul|engine_reference)|convert/(convert_families|convert_oracle|dequant)|synth/synth_random)_test[.]cpp$'
cmake -S . -B build-aarch64 -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake -DFP4KIT_CUDA=OFF -DFP4KIT_BENCH=OFF -DFP4KIT_LIB_UNITY=ON \
  -DFP4KIT_TEST_FILES_REGEX="$tests_regex"
scripts/check-library-unity.py build-aarch64
cmake --build build-aarch64 -j "$jobs" --target fp4kit fp4kit_tests

tests=build-aarch64/fp4kit_tests-emulated
echo "== aarch64 (qemu's default CPU: SVE2, 512-bit vectors)"
# Less dequant's kill-and-resume tests (a fifth of the emulated time, no code with a path per ISA).
scripts/run-gtest-shards.sh "$tests" "$jobs" -- --gtest_filter='-DequantResume.*:CrashPoints/DequantKillResume.*'

# SVE code must give the same bytes at every vector length: the SIMD-versus-reference tests again
# with 256-bit vectors.
simd='*Kernels*:*Oracle*:DeepSeekFp*:EngineMatmul.*:SynthRandom.*:TensorError.*:Isa.*'
echo "== aarch64, SVE with 256-bit vectors"
QEMU_CPU=max,sve-default-vector-length=32 scripts/run-gtest-shards.sh "$tests" "$jobs" -- --gtest_filter="$simd"
