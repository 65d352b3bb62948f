#!/usr/bin/env bash
# dequant throughput against raw I/O of the same bytes, in one run, on a synthetic V4 checkpoint.
#   bench/dequant_bench.sh [FP4KIT] [PRESET] [WORKDIR]
# Rows: cold read of the source files; write of as many bytes as dequant writes (dd, fsync); the
# two together (the I/O floor for dequant); dequant with a cold cache; dequant into tmpfs (the CPU
# rate, no disk). Peak RSS from /usr/bin/time. Prints a table and writes WORKDIR/dequant_bench.json.
set -euo pipefail
fp4kit=${1:-build/fp4kit}
preset=${2:-v4-flash:layers=1,experts=96}
work=${3:-/tmp/fp4kit-bench}
threads=$(nproc)
rm -rf "$work"; mkdir -p "$work"
src=$work/src dst=$work/dst shm=/dev/shm/fp4kit-bench-dst

drop_cache() {  # the whole page cache where allowed, else each file's pages (fadvise DONTNEED)
  sync
  if (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then cache="cold (drop_caches)"; else
    cache="cold (per-file fadvise)"
    find "$@" -type f -exec dd if={} iflag=nocache count=0 status=none \; 2>/dev/null || true
  fi
}
calc() { awk "BEGIN { print $* }"; }
seconds() { local t0; t0=$(date +%s.%N); "$@" > /dev/null; calc "$(date +%s.%N) - $t0"; }
peak_rss_mb() { /usr/bin/time -f %M -o "$work/rss" "$@" > /dev/null; echo $(( $(cat "$work/rss") / 1024 )); }

"$fp4kit" synth "$preset" "$src" --quiet
in_bytes=$(du -sb --apparent-size "$src" | cut -f1)

drop_cache "$src"
t_read=$(seconds sh -c "cat $src/*.safetensors > /dev/null")

drop_cache "$src"
t0=$(date +%s.%N)
rss=$(peak_rss_mb "$fp4kit" dequant "$src" "$dst" --threads "$threads" --quiet)
t_dequant=$(calc "$(date +%s.%N) - $t0")
out_bytes=$(du -sb --apparent-size "$dst" | cut -f1)
cache_state=$cache

t_write=$(seconds dd if=/dev/zero of="$work/write.bin" bs=8M count=$(( out_bytes / 8388608 + 1 )) conv=fsync status=none)
rm -f "$work/write.bin"

rm -rf "$shm"
t0=$(date +%s.%N)
rss_shm=$(peak_rss_mb "$fp4kit" dequant "$src" "$shm" --threads "$threads" --quiet)
t_shm=$(calc "$(date +%s.%N) - $t0")
rm -rf "$shm"

gbps() { calc "$1 / $2 / 1e9"; }
io_floor=$(calc "$t_read + $t_write")
printf 'preset %s: %.2f GB in, %.2f GB out, %s threads, page cache %s\n\n' "$preset" \
  "$(calc "$in_bytes / 1e9")" "$(calc "$out_bytes / 1e9")" "$threads" "$cache_state"
printf '%-34s %9s %12s %12s %9s\n' "step" "seconds" "GB/s in" "GB/s out" "RSS MB"
printf '%-34s %9.2f %12.3f %12s %9s\n' "read source (cat, cold)" "$t_read" "$(gbps "$in_bytes" "$t_read")" "-" "-"
printf '%-34s %9.2f %12s %12.3f %9s\n' "write output bytes (dd, fsync)" "$t_write" "-" "$(gbps "$out_bytes" "$t_write")" "-"
printf '%-34s %9.2f %12.3f %12.3f %9s\n' "I/O floor (read + write)" "$io_floor" "$(gbps "$in_bytes" "$io_floor")" "$(gbps "$out_bytes" "$io_floor")" "-"
printf '%-34s %9.2f %12.3f %12.3f %9s\n' "fp4kit dequant (cold, to disk)" "$t_dequant" "$(gbps "$in_bytes" "$t_dequant")" "$(gbps "$out_bytes" "$t_dequant")" "$rss"
printf '%-34s %9.2f %12.3f %12.3f %9s\n' "fp4kit dequant (warm, to tmpfs)" "$t_shm" "$(gbps "$in_bytes" "$t_shm")" "$(gbps "$out_bytes" "$t_shm")" "$rss_shm"
printf '\ndequant / I/O floor = %.2f\n' "$(calc "$t_dequant / $io_floor")"
cat > "$work/dequant_bench.json" <<JSON
{"preset": "$preset", "threads": $threads, "cache": "$cache_state", "in_bytes": $in_bytes, "out_bytes": $out_bytes,
 "read_s": $t_read, "write_s": $t_write, "dequant_s": $t_dequant, "dequant_tmpfs_s": $t_shm,
 "dequant_peak_rss_mb": $rss, "dequant_tmpfs_peak_rss_mb": $rss_shm}
JSON
rm -rf "$src" "$dst"
