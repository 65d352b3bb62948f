#!/usr/bin/env bash
# The whole test suite: a Release build and an ASan+UBSan build, each with every test; the sanitized
# build also replays the fuzz corpora and runs every libFuzzer target for a few seconds. Run from the
# repository root.
set -euo pipefail
jobs=$(nproc)
# Each stage's wall time on stderr ("== stage: N s"), so that a slow run shows where it went.
stage_start=$SECONDS
stage() { echo "== $1: $(( SECONDS - stage_start )) s" >&2; stage_start=$SECONDS; }
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DFP4KIT_LIB_UNITY=ON
# The library compiles in unity groups (src/unity_groups.cmake): each build checks, before it
# compiles, that every library source is in one and that no two members of a group clash.
scripts/check-library-unity.py build
cmake --build build -j "$jobs"
stage "Release build"
# Twice as many tests as cores: many wait on the CLI processes they start (measured: 94 -> 82 s).
ctest --test-dir build --output-on-failure -j $(( 2 * jobs ))
scripts/list-skipped.sh build
stage "Release tests"
# The fast-path tests again on emulated x86 CPUs without AVX2 and without AVX-512 (the dispatch
# must pick what the CPU has), with the same binary.
scripts/test-cpu-models.sh build
stage "emulated x86 CPUs"
# -O1 -g1: sanitizer reports keep file:line, and the whole suite stays within 30 minutes on 2 cores.
# The sanitized build is the CPU-only one (CUDA compiles once, in the Release build above), which
# also proves that everything builds and runs without nvcc. It is built with clang (the Release
# build is g++'s, so both compilers build the whole tree) with FP4KIT_FUZZ=ON: the same library, with
# libFuzzer's coverage instrumentation, gives the tests and the fuzz targets, so fuzzing costs no
# third build.
cmake -S . -B build-asan -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g1" -DFP4KIT_SANITIZE=ON -DFP4KIT_FUZZ=ON -DFP4KIT_BENCH=OFF -DFP4KIT_CUDA=OFF -DFP4KIT_LIB_UNITY=ON
scripts/check-library-unity.py build-asan
cmake --build build-asan -j "$jobs"
stage "ASan+UBSan build"
# The GoogleTest cases run in a few dozen long-lived processes, four at a time, each holding whole
# test suites (scripts/run-gtest-shards.sh: one ASan start-up per process instead of per test, and a
# suite's shared set-up once); the fuzz corpus replays and the command-line scripts through ctest.
ctest --test-dir build-asan --output-on-failure -j "$jobs" -R '^(fuzz_replay|cli)\.'
scripts/run-gtest-shards.sh build-asan/fp4kit_tests $(( 2 * jobs ))
stage "ASan+UBSan tests"
# Every fuzz target for a bounded time from its seeds (fuzz/README.md records the longer runs): 15 s
# each, two at a time on 2 cores, 45 s for the five (25 s each took 75 s; cut to keep the suite
# within 30 minutes, fuzz/README.md "In every test run").
scripts/fuzz-short.sh build-asan 15 "$jobs"
stage "fuzzing"
# The aarch64 build: cross-compiled, its tests under qemu with NEON, SVE and SVE2.
scripts/test-aarch64.sh
stage "aarch64 build and tests"
