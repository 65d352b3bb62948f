# Sourced by the serve tests: starts `fp4kit serve` over the tiny checkpoint on a free loopback port
# and stops it when the test exits.
#   start_server BINARY DATA_DIR [serve flags...]   sets URL, SERVER_PID, SERVER_LOG
# SERVE_MODEL, when set, is the checkpoint directory instead of DATA_DIR/dsv4-tiny.
start_server() {
  local binary=$1 data=$2
  shift 2
  SERVER_LOG=$(mktemp /tmp/fp4kit-serve-log.XXXXXX)
  "$binary" serve "${SERVE_MODEL:-$data/dsv4-tiny}" --tokenizer "$data/serve/tokenizer.json" --port 0 --threads 2 "$@" \
    >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  trap stop_server EXIT
  local port=""
  for _ in $(seq 1 200); do
    port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$SERVER_LOG" | grep -o '[0-9]*$' || true)
    [ -n "$port" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG"; echo "the server exited"; exit 1; }
    sleep 0.05
  done
  [ -n "$port" ] || { cat "$SERVER_LOG"; echo "the server did not start listening"; exit 1; }
  URL="http://127.0.0.1:$port"
  for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" = 200 ] && return 0
    sleep 0.05
  done
  cat "$SERVER_LOG"
  echo "the model did not load"
  exit 1
}

# Also the EXIT trap: the server's log goes when the script succeeded, and is named when it failed.
stop_server() {
  local status=$?
  if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
  fi
  if [ -n "${SERVER_LOG:-}" ] && [ -f "$SERVER_LOG" ]; then
    if [ "$status" -eq 0 ]; then rm -f "$SERVER_LOG"; else echo "server log kept: $SERVER_LOG" >&2; fi
  fi
  return "$status"
}

# For a server started by the caller (SERVER_PID, SERVER_LOG) that loads a large model: waits up to
# two minutes for /health to answer 200, then sets URL; prints the log and exits 1 otherwise.
wait_until_ready() {
  URL=""
  local port
  for _ in $(seq 1 1200); do
    port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$SERVER_LOG" | grep -o '[0-9]*$' || true)
    [ -n "$port" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] &&
      URL="http://127.0.0.1:$port" && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$SERVER_LOG"
  echo "the server did not become ready"
  exit 1
}

# The benchmarks' checkpoint: MODEL when set (synthesized before, kept), else `fp4kit synth PRESET`
# made at DIR for this run (own_model names it, for removal at exit). Sets model and own_model.
#   use_model FP4KIT PRESET DIR
use_model() {
  model=${MODEL:-}
  own_model=""
  [ -n "$model" ] && return 0
  model=$3
  own_model=$model
  rm -rf "$model"
  "$1" synth "$2" "$model" --quiet || exit 1
}
