#!/usr/bin/env bash
# Installs the Debian packages fp4kit builds and tests with (Debian 12 / Ubuntu 24.04 names).
set -euo pipefail
packages=(cmake ninja-build g++ clang libclang-rt-14-dev nlohmann-json3-dev libcli11-dev libgtest-dev libxxhash-dev libcpp-httplib-dev libhwy-dev qemu-user curl jq nodejs chromium python3)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
