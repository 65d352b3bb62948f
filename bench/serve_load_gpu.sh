#!/usr/bin/env bash
# `fp4kit serve --device cuda` over a synthetic full-size V4 stack resident on the GPU: decode with
# 1, 8 and 32 concurrent streaming clients (bench/serve_load.py: no errors allowed; TTFT, time
# between tokens, tokens/s, server RSS), against the bound of one decode step at batch 1: the bytes a
# token reads (every layer's attention, shared expert, router and mixing weights, its k routed
# experts, the head) at the device copy rate. Run on the GPU machine after scripts/gpu-check.sh:
#   bench/serve_load_gpu.sh [FP4KIT] [PRESET] [COPY_TB_PER_S]     (MAX_TOKENS per request, default 32;
#   SAMPLE_ON=host draws the tokens on the CPU instead of the GPU; MODEL=DIR serves a checkpoint
#   synthesized before from PRESET instead of making one)
# Without COPY_TB_PER_S the copy rate is measured on this GPU by gpu_kernels_bench (beside FP4KIT).
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build-gpu/fp4kit}
preset=${2:-v4-flash:layers=2}
copy=${3:-}
if [ -z "$copy" ]; then
  copy=$("$(dirname "$bin")/gpu_kernels_bench" --only ceilings 2>/dev/null | grep -o 'ceiling used: [0-9.]*' | grep -o '[0-9.]*$')
  [ -n "$copy" ] || { echo "could not measure the copy rate: give COPY_TB_PER_S"; exit 2; }
fi
# shellcheck source=tests/serve/serve_fixture.sh
source tests/serve/serve_fixture.sh
use_model "$bin" "$preset" "${TMPDIR:-/tmp}/fp4kit-serve-model"
python3 - "$model" "$copy" <<'PY'
import json, os, re, struct, sys
model, copy = sys.argv[1], float(sys.argv[2])
cfg = json.load(open(os.path.join(model, "config.json")))
k, experts = cfg["num_experts_per_tok"], cfg["n_routed_experts"]
step = 0.0
for f in sorted(os.listdir(model)):
    if not f.endswith(".safetensors"):
        continue
    with open(os.path.join(model, f), "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
    for name, t in header.items():
        if name == "__metadata__" or name == "embed.weight" or name.startswith("mtp."):
            continue
        size = t["data_offsets"][1] - t["data_offsets"][0]
        step += size * k / experts if re.search(r"\.ffn\.experts\.\d+\.", name) else size
print(f"bound: {step / 1e9:.3f} GB read per batch-1 decode step -> {step / (copy * 1e12) * 1e3:.3f} ms at {copy} TB/s")
PY
SERVER_LOG=$(mktemp /tmp/fp4kit-serve-log.XXXXXX)
"$bin" serve "$model" --tokenizer tests/data/serve/tokenizer.json --device cuda --sample-on "${SAMPLE_ON:-device}" --port 0 --parallel 32 --queue 64 \
  --ctx-size 1024 >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
trap 'stop_server; [ -z "$own_model" ] || rm -rf "$own_model"' EXIT
wait_until_ready
echo "| clients | requests | max_tokens | errors | TTFT p50 ms | TTFT p99 ms | between tokens p50 ms | engine step ms | sampling ms | tokens/s | RSS MB before / after |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
rc=0
for c in 1 8 32; do
  python3 bench/serve_load.py --url "$URL" --pid "$SERVER_PID" --clients $c --requests $((2 * c)) --max-tokens "${MAX_TOKENS:-32}" || rc=1
done
exit $rc
