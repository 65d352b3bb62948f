#!/usr/bin/env bash
# `fp4kit serve` driven with curl over loopback: SSE framing byte for byte (curl -N), greedy text equal
# to `fp4kit generate`, a full queue answered 503 at once, disconnected clients' generations stopped
# (streaming and not), a stalled half request not blocking others, bad input answered with OpenAI's
# error shape, SIGTERM; a model's DeepSeek V3.1 Jinja chat template served (its prompt, reasoning, a
# raise_exception as a 400) and a template outside the Jinja subset refused at start.
# Usage: serve_curl.sh FP4KIT_BINARY TESTS_DATA_DIR
set -euo pipefail
binary=$1
data=$2
here=$(cd "$(dirname "$0")/../serve" && pwd)
source "$here/serve_fixture.sh"
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: expected [$2], got [$1]"; }

# Refusals at start, each with its reason and exit code 2: a missing tokenizer, and --device cuda
# (no GPU or no CUDA build here; where there is one, the missing tokenizer stops it the same way).
set +e
out=$("$binary" serve "$data/dsv4-tiny" --port 0 2>&1)
code=$?
set -e
expect_eq "$code" 2 "exit code without a tokenizer"
grep -q "tokenizer.json" <<<"$out" || fail "no tokenizer named in: $out"
set +e
out=$("$binary" serve "$data/dsv4-tiny" --port 0 --device cuda 2>&1)
code=$?
set -e
expect_eq "$code" 2 "exit code of --device cuda"

# A model that ships a chat template outside the Jinja subset is refused (exit 2), naming the file,
# the line and the construct, and the flag that forces the V4 rules.
templated=$(mktemp -d /tmp/fp4kit-serve-template.XXXXXX)
for f in "$data/dsv4-tiny"/*; do ln -s "$f" "$templated/"; done
printf '%s' '{"chat_template": "{{ bos_token }}\n{% macro turn(m) %}{{ m.content }}{% endmacro %}"}' \
  >"$templated/tokenizer_config.json"
set +e
out=$("$binary" serve "$templated" --tokenizer "$data/serve/tokenizer.json" --port 0 2>&1)
code=$?
set -e
expect_eq "$code" 2 "exit code for a template outside the subset"
grep -q 'tokenizer_config.json (chat_template):2: the statement {% macro %} is not supported' <<<"$out" \
  || fail "no file, line and construct named in: $out"
grep -q -- "--chat-format deepseek-v4" <<<"$out" || fail "no way out named in: $out"

# A DeepSeek V3.1 template the model ships renders its chat prompts: /tokenize of a conversation is
# the tokens of the prompt Jinja2 rendered through that template; a chat reply comes back with the
# thinking apart; the template's raise_exception is a 400 naming its message.
rm "$templated/tokenizer_config.json"
{ printf '%s\n' "{% if messages[0]['content'] == 'boom' %}{{ raise_exception('boom is refused') }}{% endif %}"
  cat "$data/serve/templates/deepseek_v31_llama_cpp.jinja"; } >"$templated/chat_template.jinja"
SERVE_MODEL=$templated start_server "$binary" "$data" --model-name tiny
grep -q "chat format: the model's Jinja template $templated/chat_template.jinja" "$SERVER_LOG" \
  || fail "the template is not named at start: $(cat "$SERVER_LOG")"
golden=$(jq -c '[.[] | select(.template == "deepseek_v31_llama_cpp.jinja" and .name == "system_and_user" and .thinking)][0]' \
  "$data/serve/jinja_chat_prompts.json")
rendered=$(curl -s "$URL/tokenize" -d "$(jq -c '.request' <<<"$golden")" | jq -c .tokens)
expected=$(curl -s "$URL/tokenize" -d "$(jq -c '{prompt: .prompt, add_special_tokens: false}' <<<"$golden")" | jq -c .tokens)
expect_eq "$rendered" "$expected" "the V3.1 template's prompt"
reply=$(curl -s "$URL/v1/chat/completions" -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0}')
expect_eq "$(jq -r '.choices[0].message | has("reasoning_content")' <<<"$reply")" true "reasoning_content in: $reply"
reply=$(curl -s -w '\n%{http_code}' "$URL/v1/chat/completions" -d '{"messages":[{"role":"user","content":"boom"}],"max_tokens":4}')
expect_eq "$(tail -1 <<<"$reply")" 400 "status of a request the template refuses"
expect_eq "$(head -1 <<<"$reply" | jq -r .error.message)" "the model's chat template refused the request: boom is refused" "error message"
expect_eq "$(head -1 <<<"$reply" | jq -r .error.type)" invalid_request_error "error type"
stop_server
rm -rf "$templated"

start_server "$binary" "$data" --parallel 1 --queue 1 --ctx-size 4096 --api-key k3y --model-name tiny
auth=(-H "Authorization: Bearer k3y")
post() { curl -s "${auth[@]}" -H 'Content-Type: application/json' "$URL$1" -d "$2"; }
status() { curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$URL$1" -d "$2"; }

# Streaming: every event is "data: <json>" and a blank line; the last is [DONE]; the one before it
# has the finish reason and the usage.
stream=$(curl -sN "${auth[@]}" "$URL/v1/completions" \
  -d '{"model":"tiny","prompt":"Hello world","max_tokens":6,"temperature":0,"stream":true}')
events=$(printf '%s' "$stream" | awk 'NR % 2 == 1')
blanks=$(printf '%s\n' "$stream" | awk 'NR % 2 == 0 && $0 != ""' | wc -l)
expect_eq "$blanks" 0 "events separated by blank lines"
printf '%s\n' "$events" | grep -qv '^data: ' && fail "a line without 'data: ': $stream"
expect_eq "$(printf '%s\n' "$events" | tail -1)" "data: [DONE]" "stream end"
last=$(printf '%s\n' "$events" | tail -2 | head -1 | sed 's/^data: //')
expect_eq "$(jq -r '.choices[0].finish_reason' <<<"$last")" length "finish_reason"
expect_eq "$(jq -r '.usage.completion_tokens' <<<"$last")" 6 "usage.completion_tokens"
prompt_count=$(post /tokenize '{"prompt":"Hello world"}' | jq .count)
expect_eq "$(jq -r '.usage.prompt_tokens' <<<"$last")" "$prompt_count" "usage.prompt_tokens"
streamed_text=$(printf '%s\n' "$events" | sed '$d' | sed 's/^data: //' | jq -j '.choices[0].text')

# Greedy text equals `fp4kit generate` on the same ids, detokenized.
ids=$(post /tokenize '{"prompt":"Hello world"}' | jq -r '.tokens | join(" ")')
generated=$("$binary" generate "$data/dsv4-tiny" --ids "$ids" --max-new-tokens 6 --ignore-eos --threads 2 | tail -1)
expected=$(post /detokenize "{\"tokens\":[${generated// /,}]}" | jq -r .prompt)
whole=$(post /v1/completions '{"prompt":"Hello world","max_tokens":6,"temperature":0,"ignore_eos":true}' | jq -r '.choices[0].text')
expect_eq "$whole" "$expected" "greedy text vs fp4kit generate"
expect_eq "$streamed_text" "$(jq -j -n --arg t "$expected" '$t')" "streamed text vs whole text"

# Bad input: each answered with the error shape and its status; the server keeps serving.
expect_eq "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/models")" 401 "no API key"
expect_eq "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' "$URL/v1/models")" 401 "wrong API key"
expect_eq "$(status /v1/completions '{"prompt": "x",')" 400 "malformed JSON"
expect_eq "$(post /v1/completions '{"prompt": "x", "max_tokens": -5}' | jq -r .error.param)" max_tokens "negative max_tokens"
expect_eq "$(status /v1/completions '{"prompt": "x", "n": 3}')" 400 "n > 1"
expect_eq "$(post /v1/completions '{"prompt": "x", "model": "other"}' | jq -r .error.type)" not_found_error "unknown model"
head -c $((9 << 20)) /dev/zero | tr '\0' ' ' >"$SERVER_LOG.big"
expect_eq "$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$URL/v1/completions" --data-binary @"$SERVER_LOG.big")" 413 "oversized body"
rm -f "$SERVER_LOG.big"

# A client that sends half a request and stalls does not hold up the others.
exec 3<>"/dev/tcp/127.0.0.1/${URL##*:}"
printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n{"prompt": "hal' >&3
start=$(date +%s%N)
expect_eq "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" 200 "health beside a stalled client"
[ $(( ($(date +%s%N) - start) / 1000000 )) -lt 2000 ] || fail "a stalled client delayed another request"
exec 3>&-

# One running, one waiting: a third request gets 503 at once. Then both clients hang up, and the
# server stops generating for them (counted as aborted) instead of finishing 4000 tokens each.
long='{"prompt":"Once upon a time","max_tokens":4000,"temperature":0,"ignore_eos":true,"stream":true}'
curl -sN "${auth[@]}" "$URL/v1/completions" -d "$long" >/dev/null &
first=$!
curl -sN "${auth[@]}" "$URL/v1/completions" -d "$long" >/dev/null &
second=$!
metric() { curl -s "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
for _ in $(seq 1 200); do
  [ "$(metric fp4kit:num_requests_running)" = 1 ] && [ "$(metric fp4kit:num_requests_waiting)" = 1 ] && break
  sleep 0.05
done
[ "$(metric fp4kit:num_requests_waiting)" = 1 ] || { curl -s "$URL/metrics" | grep -v "^#" | head -12; jobs -l; cat "$SERVER_LOG"; fail "no waiting request"; }
busy=$(curl -s -w ' %{http_code}' --max-time 5 "${auth[@]}" "$URL/v1/completions" -d '{"prompt":"x","max_tokens":2}')
expect_eq "${busy##* }" 503 "full queue"
expect_eq "$(jq -r .error.type <<<"${busy% *}")" unavailable_error "full queue error type"
kill "$first" "$second"
wait "$first" "$second" 2>/dev/null || true
for _ in $(seq 1 200); do
  [ "$(metric 'fp4kit:request_success_total{finished_reason="abort"}')" = 2 ] && break
  sleep 0.05
done
expect_eq "$(metric 'fp4kit:request_success_total{finished_reason="abort"}')" 2 "disconnected clients aborted"
expect_eq "$(metric fp4kit:num_requests_running)" 0 "nothing left running"
[ "$(metric fp4kit:generation_tokens_total)" -lt 4000 ] || fail "the hung-up requests ran on"

# A non-streaming client that hangs up before its reply: nothing is written to it until the end,
# yet its generation stops too (the server probes the connection while it waits).
generated_before=$(metric fp4kit:generation_tokens_total)
long_whole='{"prompt":"Once upon a time","max_tokens":4000,"temperature":0,"ignore_eos":true}'
exec 4<>"/dev/tcp/127.0.0.1/${URL##*:}"
printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
  "${#long_whole}" "$long_whole" >&4
for _ in $(seq 1 200); do
  [ "$(metric fp4kit:num_requests_running)" = 1 ] && break
  sleep 0.05
done
expect_eq "$(metric fp4kit:num_requests_running)" 1 "the non-streaming request runs"
exec 4>&-
hangup=$(date +%s%N)
for _ in $(seq 1 200); do
  [ "$(metric 'fp4kit:request_success_total{finished_reason="abort"}')" = 3 ] && break
  sleep 0.05
done
expect_eq "$(metric 'fp4kit:request_success_total{finished_reason="abort"}')" 3 "non-streaming client that hung up aborted"
[ $(( ($(date +%s%N) - hangup) / 1000000 )) -lt 5000 ] || fail "the non-streaming abort took more than 5 s"
expect_eq "$(metric fp4kit:num_requests_running)" 0 "nothing left running after the hang-up"
[ $(( $(metric fp4kit:generation_tokens_total) - generated_before )) -lt 4000 ] || fail "the hung-up non-streaming request ran on"

# Still serving; SIGTERM stops it cleanly.
expect_eq "$(status /v1/completions '{"prompt":"x","max_tokens":2}')" 200 "serving after all that"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
code=$?
SERVER_PID=""
expect_eq "$code" 0 "exit code after SIGTERM"
echo "serve_curl: all checks passed"
