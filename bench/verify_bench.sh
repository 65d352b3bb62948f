#!/usr/bin/env bash
# verify against reading the same bytes (cold cat), in one run, on a synthetic V4 checkpoint.
#   bench/verify_bench.sh [FP4KIT] [PRESET] [WORKDIR] [REPEATS]
# Makes a source with `fp4kit synth PRESET` and its NVFP4 checkpoint with `fp4kit convert` (lossless
# cast, weight-only), then, each from a cold page cache, REPEATS times (default 2; the disk is bursty):
#   cat of the NVFP4 checkpoint's shards          vs  verify OUT                  (reads OUT)
#   cat of the shards of OUT and of the source    vs  verify OUT --source SRC     (reads both)
#   verify OUT --structure-only                    (headers, scalars and configs)
# Prints one line per run (seconds, GB/s of the bytes read, peak RSS) and writes WORKDIR/verify_bench.json.
set -euo pipefail
fp4kit=${1:-build/fp4kit}
preset=${2:-v4-flash:layers=1,experts=64}
work=${3:-/tmp/fp4kit-verify-bench}
repeats=${4:-2}
threads=$(nproc)
rm -rf "$work"; mkdir -p "$work"
src=$work/src out=$work/out

calc() { awk "BEGIN { print $* }"; }
drop_cache() {
  sync
  if (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then cache="drop_caches"; else
    cache="per-file fadvise"
    find "$@" -type f -exec dd if={} iflag=nocache count=0 status=none \; 2>/dev/null || true
  fi
}
rows=()
timed() {  # timed LABEL BYTES_READ command...: one cold run; wall seconds and peak RSS (MB)
  local label=$1 bytes=$2; shift 2
  drop_cache "$src" "$out"
  local t0; t0=$(date +%s.%N)
  local rc=0
  /usr/bin/time -f %M -o "$work/rss" "$@" > "$work/stdout" 2> "$work/stderr" || rc=$?
  local t; t=$(calc "$(date +%s.%N) - $t0")
  if [ "$rc" -ne 0 ]; then cat "$work/stdout" "$work/stderr"; echo "$label: exit $rc"; exit 1; fi
  local rss=$(( $(cat "$work/rss") / 1024 ))
  printf '%-46s %9.2f %9.3f %8s\n' "$label" "$t" "$(calc "$bytes / $t / 1e9")" "$rss"
  rows+=("{\"step\": \"$label\", \"seconds\": $t, \"rss_mb\": $rss, \"bytes_read\": $bytes}")
}

"$fp4kit" synth "$preset" "$src" --quiet
"$fp4kit" convert "$src" "$out" --weight-only --threads "$threads" --quiet 2> /dev/null
out_bytes=$(cat "$out"/model-*.safetensors | wc -c)
src_bytes=$(cat "$src"/model-*.safetensors | wc -c)
both=$((out_bytes + src_bytes))
printf 'preset %s: NVFP4 checkpoint %.2f GB, source %.2f GB, %s cores, page cache: %s\n' "$preset" \
  "$(calc "$out_bytes / 1e9")" "$(calc "$src_bytes / 1e9")" "$threads" "$(drop_cache "$src"; echo "$cache")"
printf '%-46s %9s %9s %8s\n' "step" "seconds" "GB/s" "RSS MB"
for r in $(seq "$repeats"); do
  timed "cat OUT shards" "$out_bytes" sh -c "cat $out/model-*.safetensors > /dev/null"
  timed "verify OUT" "$out_bytes" "$fp4kit" verify "$out" --threads "$threads"
  timed "cat OUT + SRC shards" "$both" sh -c "cat $out/model-*.safetensors $src/model-*.safetensors > /dev/null"
  timed "verify OUT --source SRC" "$both" "$fp4kit" verify "$out" --source "$src" --threads "$threads" --json "$work/report.json"
  timed "verify OUT --structure-only" "$out_bytes" "$fp4kit" verify "$out" --structure-only --threads "$threads"
done
tail -1 "$work/stdout"
{
  printf '{"preset": "%s", "out_bytes": %s, "source_bytes": %s, "threads": %s, "runs": [' "$preset" "$out_bytes" "$src_bytes" "$threads"
  (IFS=,; printf '%s' "${rows[*]}")
  printf ']}\n'
} > "$work/verify_bench.json"
echo "wrote $work/verify_bench.json"
