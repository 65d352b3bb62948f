#!/usr/bin/env bash
# Calibration throughput on full-size synthetic V4-Flash layers, its peak RSS, and a projection for
# the full V4 Pro at 128 samples x 512 tokens.
#   bench/calibrate_bench.sh [FP4KIT] [PRESET] [DIR] [SAMPLES] [SEQ_LEN] [THREADS]
# Defaults: build/fp4kit, "v4-flash:layers=4,experts=8" (layers 0-1 sliding, 2 CSA, 3 HCA, every
# dimension full size; 8 routed experts instead of 256 keeps the per-token work of top-6 routing and
# loads fewer matrices), /tmp/fp4kit-engine-bench (shared with engine_bench.sh), 2, 128, nproc.
set -euo pipefail
FP4KIT=${1:-build/fp4kit}
PRESET=${2:-v4-flash:layers=4,experts=8}
DIR=${3:-/tmp/fp4kit-engine-bench}
SAMPLES=${4:-2}
SEQ=${5:-128}
THREADS=${6:-$(nproc)}

if [ ! -f "$DIR/model.safetensors.index.json" ]; then
  rm -rf "$DIR"
  "$FP4KIT" synth "$PRESET" "$DIR" --quiet
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 - "$DIR" "$SAMPLES" "$SEQ" > "$WORK/data.ids" <<'PY'
import json, sys
vocab = json.load(open(sys.argv[1] + "/config.json"))["vocab_size"]
samples, seq = int(sys.argv[2]), int(sys.argv[3])
for s in range(samples):
    print(" ".join(str((s * 104729 + i * 7919 + 13) % vocab) for i in range(seq)))
PY
for mode in routed all-experts; do
  flag=""; [ "$mode" = all-experts ] && flag="--all-experts"
  /usr/bin/time -f "%M" -o "$WORK/$mode.rss" "$FP4KIT" calibrate "$DIR" --data "$WORK/data.ids" --samples "$SAMPLES" \
    --seq-len "$SEQ" --threads "$THREADS" --out "$WORK/$mode.safetensors" --json "$WORK/$mode.json" --quiet $flag
done
python3 - "$WORK" "$DIR" "$THREADS" <<'PY'
import json, sys
work, d, threads = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = json.load(open(d + "/config.json"))
kinds = {0: "sliding", 4: "CSA", 128: "HCA"}
per = {}
for mode in ("routed", "all-experts"):
    r = json.load(open(f"{work}/{mode}.json"))
    rss = int(open(f"{work}/{mode}.rss").read()) / 1024
    print(f"{mode}: {r['tokens']} tokens, {threads} threads, {r['entries']} amax values, {r['seconds']:.1f} s, peak RSS {rss:.0f} MB")
    for l in r["layers"]:
        print(f"  layer {l['layer']} ({kinds[cfg['compress_ratios'][l['layer']]]:7s}) {l['seconds']:8.2f} s  {l['tokens_per_second']:8.1f} tokens/s")
    per[mode] = r
# Projection: time per token of a layer scales with the weights each token multiplies (attention
# projections + top-k routed + shared experts); Pro / Flash from the two presets' shapes.
def linear_per_token(c):
    h, q, o = c["hidden_size"], c["q_lora_rank"], c["o_lora_rank"]
    nh, hd, g = c["num_attention_heads"], c["head_dim"], c["o_groups"]
    attn = h * q + q * nh * hd + h * hd + (nh * hd // g) * o * g + g * o * h
    moe = (c["num_experts_per_tok"] + c.get("n_shared_experts", 1)) * 3 * h * c["moe_intermediate_size"]
    return attn + moe
flash = {"hidden_size": 4096, "q_lora_rank": 1024, "o_lora_rank": 1024, "num_attention_heads": 64, "head_dim": 512,
         "o_groups": 8, "num_experts_per_tok": 6, "n_shared_experts": 1, "moe_intermediate_size": 2048}
pro = {"hidden_size": 7168, "q_lora_rank": 1536, "o_lora_rank": 1024, "num_attention_heads": 128, "head_dim": 512,
       "o_groups": 16, "num_experts_per_tok": 6, "n_shared_experts": 1, "moe_intermediate_size": 3072}
ratio = linear_per_token(pro) / linear_per_token(flash)
r = per["routed"]
layer_tps = sum(l["tokens_per_second"] for l in r["layers"]) / len(r["layers"])
tokens = 128 * 512
hours = tokens / (layer_tps / ratio) * 61 / 3600
print(f"projection, V4 Pro (61 layers, {ratio:.2f}x the per-token weights of a Flash layer), 128 x 512 tokens, "
      f"{threads} threads of this machine: {hours:.0f} h; per core-hour scaling: {hours * int(threads):.0f} core-hours")
PY
