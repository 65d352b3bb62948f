#!/usr/bin/env bash
# `fp4kit serve` driven by the official OpenAI Node SDK (tests/serve/node). Installs the SDK from
# the lock file with `npm ci` when it is not there yet; skips (exit 77) with the reason when node or
# npm is missing or the npm registry cannot be reached.
# Usage: serve_openai_node.sh FP4KIT_BINARY TESTS_DATA_DIR
set -euo pipefail
binary=$1
data=$2
node_dir=$(cd "$(dirname "$0")/../serve/node" && pwd)
source "$node_dir/../serve_fixture.sh"
command -v node >/dev/null || { echo "SKIP: node is not installed"; exit 77; }
if [ ! -d "$node_dir/node_modules/openai" ]; then
  command -v npm >/dev/null || { echo "SKIP: npm is not installed"; exit 77; }
  (cd "$node_dir" && npm ci --no-audit --no-fund >"$node_dir/npm-ci.log" 2>&1) ||
    { cat "$node_dir/npm-ci.log"; echo "SKIP: npm ci failed (is the npm registry reachable?)"; exit 77; }
fi
start_server "$binary" "$data" --parallel 2 --queue 8 --ctx-size 2048 --api-key node-k3y --model-name tiny
FP4KIT_SERVE_URL=$URL FP4KIT_BINARY=$binary FP4KIT_TEST_DATA=$data node --test "$node_dir/serve_openai.test.mjs"
