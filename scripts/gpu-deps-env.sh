# Sourced by the GPU scripts: where .gpu-deps/ holds the unpacked Debian packages (scripts/gpu-deps.sh),
# the CMake arguments that find them (gpu_deps_cmake_args) and the library path that loads them;
# the build and the memcheck run they share (gpu_build, gpu_memcheck).
gpu_deps_cmake_args=()
if [ -d .gpu-deps/root ]; then
  gpu_deps_root=$PWD/.gpu-deps/root
  gpu_deps_cmake_args=(-DCMAKE_PREFIX_PATH="$gpu_deps_root/usr"
                       -DXXHASH_LIBRARY="$gpu_deps_root/usr/lib/x86_64-linux-gnu/libxxhash.a"
                       -DXXHASH_INCLUDE_DIR="$gpu_deps_root/usr/include")
  export LD_LIBRARY_PATH=$gpu_deps_root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi

# gpu_build LOG [TARGETS...]: configures build-gpu (Release, CUDA for FP4KIT_CUDA_ARCHS, default 90a)
# and builds TARGETS (everything where none is named), output in LOG; on failure prints its errors.
gpu_build() {
  local log=$1
  shift
  { cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DFP4KIT_CUDA=ON -DFP4KIT_CUDA_ARCHS="${FP4KIT_CUDA_ARCHS:-90a}" \
      "${gpu_deps_cmake_args[@]}" && cmake --build build-gpu -j "$(nproc)" ${1:+--target "$@"}; } > "$log" 2>&1 ||
    { grep -E "error" -A3 "$log" | head -40; return 1; }
}

# gpu_memcheck TESTS FILTER LOG SUMMARY: the gtest binary TESTS, tests matching FILTER, under
# compute-sanitizer's memcheck (output in LOG; at most SAN_TIMEOUT seconds, default 900); one line
# of result appended to SUMMARY and printed.
gpu_memcheck() {
  timeout "${SAN_TIMEOUT:-900}" compute-sanitizer --tool memcheck --error-exitcode 9 "$1" --gtest_filter="$2" > "$3" 2>&1
  local rc=$?
  echo "== memcheck rc=$rc ($(grep -c '^\[       OK' "$3") tests passed; $(grep -o 'ERROR SUMMARY: [0-9]* errors' "$3" | tail -1))" |
    tee -a "$4"
  return $rc
}
