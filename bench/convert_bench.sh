#!/usr/bin/env bash
# convert against copying the same files (cp + sync), in one run, on synthetic V4 checkpoints, and
# peak RSS as the checkpoint grows.
#   bench/convert_bench.sh [FP4KIT] [PRESET] [WORKDIR] [BIGGER_PRESET]
# Rows: cp -r + sync of the source (cold cache); convert (lossless cast) cold; convert
# --numerics modelopt (requantize) cold. Then peak RSS of convert on BIGGER_PRESET (more layers).
# Prints a table and writes WORKDIR/convert_bench.json.
set -euo pipefail
fp4kit=${1:-build/fp4kit}
preset=${2:-v4-flash:layers=1,experts=96}
work=${3:-/tmp/fp4kit-convert-bench}
bigger=${4:-v4-flash:layers=4,experts=96}
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
timed() {  # timed RSS_VAR SECONDS_VAR command...: wall seconds and peak RSS (MB) of one command
  local t0; t0=$(date +%s.%N)
  /usr/bin/time -f %M -o "$work/rss" "${@:3}" > /dev/null 2> "$work/stderr" || { cat "$work/stderr"; exit 1; }
  printf -v "$2" '%s' "$(calc "$(date +%s.%N) - $t0")"
  printf -v "$1" '%s' "$(( $(cat "$work/rss") / 1024 ))"
}

"$fp4kit" synth "$preset" "$src" --quiet
in_bytes=$(du -sb --apparent-size "$src" | cut -f1)

drop_cache "$src"; timed rss_cp t_cp sh -c "cp -r $src $work/copy && sync"; rm -rf "$work/copy"
drop_cache "$src"; timed rss_cast t_cast "$fp4kit" convert "$src" "$work/cast" --weight-only --threads "$threads" --quiet
out_bytes=$(du -sb --apparent-size "$work/cast" | cut -f1); rm -rf "$work/cast"
drop_cache "$src"; timed rss_rq t_rq "$fp4kit" convert "$src" "$work/requant" --weight-only --numerics modelopt --threads "$threads" --quiet
rm -rf "$work/requant" "$src"

"$fp4kit" synth "$bigger" "$src" --quiet
big_bytes=$(du -sb --apparent-size "$src" | cut -f1)
drop_cache "$src"; timed rss_big t_big "$fp4kit" convert "$src" "$work/big" --weight-only --threads "$threads" --quiet
rm -rf "$work/big" "$src"

gbps() { calc "$1 / $2 / 1e9"; }
printf 'preset %s: %.2f GB in, %.2f GB out, %s threads, page cache %s\n\n' "$preset" "$(calc "$in_bytes / 1e9")" \
  "$(calc "$out_bytes / 1e9")" "$threads" "$cache"
printf '%-40s %9s %10s %9s %12s\n' "step" "seconds" "GB/s in" "RSS MB" "vs copy"
printf '%-40s %9.2f %10.3f %9s %12s\n' "cp -r + sync (cold)" "$t_cp" "$(gbps "$in_bytes" "$t_cp")" "$rss_cp" "1.00"
printf '%-40s %9.2f %10.3f %9s %12.2f\n' "convert, lossless cast (cold)" "$t_cast" "$(gbps "$in_bytes" "$t_cast")" "$rss_cast" "$(calc "$t_cast / $t_cp")"
printf '%-40s %9.2f %10.3f %9s %12.2f\n' "convert --numerics modelopt (cold)" "$t_rq" "$(gbps "$in_bytes" "$t_rq")" "$rss_rq" "$(calc "$t_rq / $t_cp")"
printf '%-40s %9.2f %10.3f %9s %12s\n' "convert, cast, $bigger" "$t_big" "$(gbps "$big_bytes" "$t_big")" "$rss_big" "-"
cat > "$work/convert_bench.json" <<JSON
{"preset": "$preset", "bigger": "$bigger", "threads": $threads, "cache": "$cache", "in_bytes": $in_bytes,
 "out_bytes": $out_bytes, "bigger_in_bytes": $big_bytes, "copy_s": $t_cp, "cast_s": $t_cast, "requant_s": $t_rq,
 "bigger_cast_s": $t_big, "rss_mb": {"copy": $rss_cp, "cast": $rss_cast, "requant": $rss_rq, "bigger_cast": $rss_big}}
JSON
