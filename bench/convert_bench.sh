#!/usr/bin/env bash
# convert against copying the same files (cp + sync), in one run, on synthetic V4 checkpoints; thread
# scaling; peak RSS as the checkpoint grows.
#   bench/convert_bench.sh [FP4KIT] [PRESET] [WORKDIR] [BIGGER_PRESET] [REPEATS]
# Every step runs REPEATS times (default 2; the disk is bursty), each from a cold page cache:
# cp -r + sync of the source; the same files copied with dd around the page cache (O_DIRECT, the
# disk's own speed for a job that reads and writes every byte once); convert (lossless cast) on all cores and on 1 thread; convert
# --numerics modelopt (requantize) on all cores and on 1 thread; convert --recipe all-linear; then
# convert (cast) of BIGGER_PRESET (more layers) for peak RSS.
# Prints one line per run and writes WORKDIR/convert_bench.json.
set -euo pipefail
fp4kit=${1:-build/fp4kit}
preset=${2:-v4-flash:layers=1,experts=96}
work=${3:-/tmp/fp4kit-convert-bench}
bigger=${4:-v4-flash:layers=4,experts=96}
repeats=${5:-2}
threads=$(nproc)
rm -rf "$work"; mkdir -p "$work"
src=$work/src

calc() { awk "BEGIN { print $* }"; }
drop_cache() {
  sync
  if (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then cache="cold (drop_caches)"; else
    cache="cold (per-file fadvise)"
    find "$@" -type f -exec dd if={} iflag=nocache count=0 status=none \; 2>/dev/null || true
  fi
}
rows=()
timed() {  # timed LABEL IN_BYTES command...: one cold run; wall seconds and peak RSS (MB)
  local label=$1 in=$2; shift 2
  drop_cache "$src"
  local t0; t0=$(date +%s.%N)
  /usr/bin/time -f '%M %U %S' -o "$work/rss" "$@" > /dev/null 2> "$work/stderr" || { cat "$work/stderr"; exit 1; }
  local t; t=$(calc "$(date +%s.%N) - $t0")
  local rss cpu
  read -r rss user sys < "$work/rss"; rss=$(( rss / 1024 )); cpu=$(calc "$user + $sys")
  # GB/s per CPU second: what one core sustains, whatever the disk did
  printf '%-44s %9.2f %9.3f %8s %9.2f %9.3f\n' "$label" "$t" "$(calc "$in / $t / 1e9")" "$rss" "$cpu" "$(calc "$in / $cpu / 1e9")"
  rows+=("{\"step\": \"$label\", \"seconds\": $t, \"cpu_seconds\": $cpu, \"rss_mb\": $rss, \"in_bytes\": $in}")
}

"$fp4kit" synth "$preset" "$src" --quiet
in_bytes=$(du -sb --apparent-size "$src" | cut -f1)
printf 'preset %s: %.2f GB in, %s cores\n' "$preset" "$(calc "$in_bytes / 1e9")" "$threads"
printf '%-44s %9s %9s %8s %9s %9s\n' "step" "seconds" "GB/s in" "RSS MB" "CPU s" "GB/CPU-s"
for r in $(seq "$repeats"); do
  timed "cp -r + sync" "$in_bytes" sh -c "cp -r $src $work/copy && sync"; rm -rf "$work/copy"
  # The disk's own speed for this job: each file read and written once around the page cache.
  if dd if=/dev/zero of="$work/probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
    timed "dd O_DIRECT copy (64 MB blocks)" "$in_bytes" sh -c "mkdir -p $work/copy && for f in $src/*; do dd if=\$f of=$work/copy/\$(basename \$f) bs=64M iflag=direct oflag=direct status=none 2>/dev/null || cp \$f $work/copy/; done"
    rm -rf "$work/copy"
  fi
  rm -f "$work/probe"
  for t in "$threads" 1; do
    timed "convert cast, $t threads" "$in_bytes" "$fp4kit" convert "$src" "$work/out" --weight-only --threads "$t" --quiet --force
    out_bytes=$(du -sb --apparent-size "$work/out" | cut -f1); rm -rf "$work/out"
    timed "convert --numerics modelopt, $t threads" "$in_bytes" "$fp4kit" convert "$src" "$work/out" --weight-only --numerics modelopt --threads "$t" --quiet --force
    rm -rf "$work/out"
  done
  timed "convert --recipe all-linear, $threads threads" "$in_bytes" "$fp4kit" convert "$src" "$work/out" --weight-only --recipe all-linear --threads "$threads" --quiet --force
  rm -rf "$work/out"
done
rm -rf "$src"

"$fp4kit" synth "$bigger" "$src" --quiet
big_bytes=$(du -sb --apparent-size "$src" | cut -f1)
timed "convert cast, $bigger" "$big_bytes" "$fp4kit" convert "$src" "$work/big" --weight-only --threads "$threads" --quiet
rm -rf "$work/big" "$src"
printf 'page cache: %s; cast output %.2f GB\n' "$cache" "$(calc "$out_bytes / 1e9")"
{
  printf '{"preset": "%s", "bigger": "%s", "threads": %s, "cache": "%s", "in_bytes": %s, "out_bytes": %s, "runs": [\n' \
    "$preset" "$bigger" "$threads" "$cache" "$in_bytes" "$out_bytes"
  (IFS=,; printf '%s\n' "${rows[*]}")
  printf ']}\n'
} > "$work/convert_bench.json"
