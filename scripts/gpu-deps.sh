#!/usr/bin/env bash
# The GPU machine has the CUDA toolkit, a compiler, CMake and ninja, but none of the Debian -dev
# packages fp4kit builds with, and no network. This unpacks them (same packages as install-deps.sh)
# into .gpu-deps/ (ignored by git), which travels with the working tree; gpu-check.sh uses it.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(nlohmann-json3-dev libhwy-dev libhwy1 libcli11-dev libgtest-dev libxxhash-dev libxxhash0 libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libssl-dev zlib1g-dev)
rm -rf .gpu-deps && mkdir -p .gpu-deps/debs
(cd .gpu-deps/debs && apt-get download "${packages[@]}")
for deb in .gpu-deps/debs/*.deb; do dpkg-deb -x "$deb" .gpu-deps/root; done
rm -rf .gpu-deps/debs
du -sh .gpu-deps
