# Sourced by the GPU scripts: where .gpu-deps/ holds the unpacked Debian packages (scripts/gpu-deps.sh),
# the CMake arguments that find them (gpu_deps_cmake_args) and the library path that loads them.
gpu_deps_cmake_args=()
if [ -d .gpu-deps/root ]; then
  gpu_deps_root=$PWD/.gpu-deps/root
  gpu_deps_cmake_args=(-DCMAKE_PREFIX_PATH="$gpu_deps_root/usr"
                       -DXXHASH_LIBRARY="$gpu_deps_root/usr/lib/x86_64-linux-gnu/libxxhash.a"
                       -DXXHASH_INCLUDE_DIR="$gpu_deps_root/usr/include")
  export LD_LIBRARY_PATH=$gpu_deps_root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
