#!/usr/bin/env bash
# The device timeline of `fp4kit serve --device cuda` decoding for one streaming client (or CLIENTS)
# over a synthetic full-size V4 stack resident on the GPU: bench/cuda_timeline records every kernel,
# copy and CUDA call, bench/timeline_steps.py splits the decode steps into the device's busy time,
# its idle time (and how much of it waited for a launch) and the host's time between steps.
#   bench/serve_timeline_gpu.sh [BUILD_DIR] [PRESET] [OUT_CSV]      (CLIENTS, default 1; MAX_TOKENS, default 32;
#   MODEL=DIR: a checkpoint synthesized before from PRESET)
set -uo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build-gpu}")
preset=${2:-v4-flash:layers=2}
csv=${3:-${TMPDIR:-/tmp}/fp4kit-serve-timeline.csv}
[ -f "$build/libcuda_timeline.so" ] || { echo "$build/libcuda_timeline.so is missing (a CUDA build with CUPTI makes it)"; exit 2; }
# shellcheck source=tests/serve/serve_fixture.sh
source tests/serve/serve_fixture.sh
use_model "$build/fp4kit" "$preset" "${TMPDIR:-/tmp}/fp4kit-timeline-model"
SERVER_LOG=$(mktemp /tmp/fp4kit-serve-log.XXXXXX)
CUDA_INJECTION64_PATH=$build/libcuda_timeline.so FP4KIT_TIMELINE=$csv \
  "$build/fp4kit" serve "$model" --tokenizer tests/data/serve/tokenizer.json --device cuda --port 0 --parallel 32 \
  --ctx-size 1024 >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
trap 'stop_server; [ -z "$own_model" ] || rm -rf "$own_model"' EXIT
wait_until_ready
c=${CLIENTS:-1}
python3 bench/serve_load.py --url "$URL" --pid "$SERVER_PID" --clients "$c" --requests $((2 * c)) --max-tokens "${MAX_TOKENS:-32}"
sleep 1  # the timeline library writes what the device finished every 100 ms
stop_server
SERVER_PID=""
python3 bench/timeline_steps.py "$csv"
