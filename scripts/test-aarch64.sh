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

cmake -S . -B build-aarch64 -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake -DFP4KIT_CUDA=OFF -DFP4KIT_BENCH=OFF
cmake --build build-aarch64 -j "$jobs" --target fp4kit fp4kit_tests

# Under qemu the suite costs far more than natively (f32 arithmetic is emulated, each process start
# is about 0.5 s, the GPTQ tests take 35-100 s each), and all of it does not fit CI's
# budget. This runs the byte-exact formats and SIMD-versus-scalar tests, io, verify, the forward
# pass (engine) and convert/dequant, in long-lived gtest processes (scripts/run-gtest-shards.sh
# through build-aarch64/fp4kit_tests-emulated, not one process per test as ctest would).
# Left out: base (Cholesky), calib, eval, serve, inspect, models, synth (except SynthRandom, a
# SIMD-versus-scalar test), ConvertGptq, ConvertHessian and RandomKill's calibrate case (each
# minutes under qemu), the fuzz replays and tests/cli/*.sh.
# Measured on a shared 2-core machine, one process per group, seconds of wall time inside the tests
# (CPU seconds where taken), without the AVX2 files so with the SIMD tests skipped: formats 81 (45),
# io 3 (2), verify 44 (34), engine 240 (108), convert+dequant about 285; the cross build of fp4kit
# and fp4kit_tests about 1400 CPU seconds.
suites() {  # the gtest filter of every suite defined in tests/DIR/*_test.cpp
  grep -hoE '^(TEST|TEST_F|TEST_P|TYPED_TEST|TYPED_TEST_P)\( *[A-Za-z0-9_]+' "tests/$1"/*_test.cpp |
    sed -E 's/.*\( *//' | sort -u | awk '{printf "%s%s.*:*/%s.*", (NR > 1 ? ":" : ""), $1, $1}'
}
filter="$(suites formats):$(suites io):$(suites verify):$(suites engine):$(suites convert):SynthRandom.*"
filter="$filter-ConvertGptq.*:ConvertHessian.*:*RandomKill.*/calibrate"
tests=build-aarch64/fp4kit_tests-emulated
echo "== aarch64 (qemu's default CPU: SVE2, 512-bit vectors)"
scripts/run-gtest-shards.sh "$tests" "$jobs" -- --gtest_filter="$filter"
# SVE code must give the same bytes at every vector length: the SIMD-versus-scalar tests again with
# 256-bit vectors.
simd='*Kernels*:*Oracle*:DeepSeekFp*:EngineMatmul.*:SynthRandom.*:TensorError.*'
echo "== aarch64, SVE with 256-bit vectors"
QEMU_CPU=max,sve-default-vector-length=32 scripts/run-gtest-shards.sh "$tests" "$jobs" -- --gtest_filter="$simd"
