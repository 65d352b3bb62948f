#!/usr/bin/env bash
# Load test of `fp4kit serve` over the tiny V4 checkpoint on loopback (CPU engine): for 1, 4 and 8
# concurrent streaming clients (bench/serve_load.mjs), a fixed count of requests each; no errors
# allowed; p50/p99 time to first token, generated tokens/s over the run, server RSS before / peak /
# after. Then a soak: the same server through 10 rounds of 8 clients, RSS after each round.
#   bench/serve_load.sh [FP4KIT] [WORKDIR]
# shellcheck source=bench/tiny_env.sh
source "$(dirname "$0")/tiny_env.sh"
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
source "$here/../tests/serve/serve_fixture.sh"
start_server "$FP4KIT" "$DATA" --parallel 8 --queue 64 --ctx-size 512
echo "| clients | requests | max_tokens | errors | TTFT p50 ms | TTFT p99 ms | tokens/s | RSS MB before / peak / after |"
echo "|---:|---:|---:|---:|---:|---:|---:|---|"
for c in 1 4 8; do
  node "$here/serve_load.mjs" --url "$URL" --pid "$SERVER_PID" --clients $c --requests 32 --max-tokens 64 \
    --json "$WORK/serve_load_$c.json"
done
echo
echo "soak: RSS (MB) after each of 10 rounds of 8 clients x 32 requests x 64 tokens"
for round in $(seq 1 10); do
  node "$here/serve_load.mjs" --url "$URL" --pid "$SERVER_PID" --clients 8 --requests 32 --max-tokens 64 \
    --json "$WORK/soak_$round.json" >/dev/null
  printf '%s ' "$(node -e "console.log(JSON.parse(require('fs').readFileSync('$WORK/soak_$round.json')).rss_after_mb.toFixed(1))")"
done
echo
