#!/usr/bin/env bash
# Forward throughput of the f32 reference engine on full-size synthetic V4-Flash layers.
#   bench/engine_bench.sh [FP4KIT] [PRESET] [DIR] [TOKENS] [THREADS]
# Defaults: build/fp4kit, "v4-flash:layers=4,experts=8" (layers 0-1 sliding, 2 CSA, 3 HCA, full
# hidden/attention/expert shapes; 8 experts instead of 256, which keeps the per-token work of the
# top-6 routing the same and only loads fewer expert matrices), /tmp/fp4kit-engine-bench, 128, nproc.
# Prints seconds and tokens/s per layer and for the head, and the peak RSS.
set -euo pipefail
FP4KIT=${1:-build/fp4kit}
PRESET=${2:-v4-flash:layers=4,experts=8}
DIR=${3:-/tmp/fp4kit-engine-bench}
TOKENS=${4:-128}
THREADS=${5:-$(nproc)}

if [ ! -f "$DIR/model.safetensors.index.json" ]; then
  rm -rf "$DIR"
  "$FP4KIT" synth "$PRESET" "$DIR" --quiet
fi
VOCAB=$(python3 -c "import json; print(json.load(open('$DIR/config.json'))['vocab_size'])")
IDS=$(python3 -c "print(' '.join(str((i * 7919 + 13) % $VOCAB) for i in range($TOKENS)))")
REPORT=$(mktemp)
/usr/bin/time -f "%M" -o "$REPORT.rss" "$FP4KIT" run "$DIR" --ids "$IDS" --threads "$THREADS" --json > "$REPORT"
python3 - "$REPORT" "$DIR" "$(cat "$REPORT.rss")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cfg = json.load(open(sys.argv[2] + "/config.json"))
kinds = {0: "sliding", 4: "CSA", 128: "HCA"}
n = r["batch"] * r["seq"]
print(f"{n} tokens, {r['threads']} threads, peak RSS {int(sys.argv[3]) / 1024:.0f} MB")
for i, s in enumerate(r["layer_seconds"]):
    print(f"layer {i} ({kinds[cfg['compress_ratios'][i]]:7s}) {s:8.2f} s  {n / s:8.1f} tokens/s")
print(f"head               {r['head_seconds']:8.2f} s  {n / r['head_seconds']:8.1f} tokens/s")
print(f"total              {r['seconds']:8.2f} s  {r['tokens_per_second']:8.1f} tokens/s")
PY
rm -f "$REPORT" "$REPORT.rss"
