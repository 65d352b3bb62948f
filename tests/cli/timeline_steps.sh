#!/usr/bin/env bash
# bench/timeline_steps.py's arithmetic on a timeline made here, whose answers are known: passes of
# a copy in, three kernels and a copy out, the third kernel's launch call returning after the second
# kernel ended (the device waited 4 µs for it), 20 µs between passes; then passes where a kernel
# launched as a dependent starts 3 µs before the one it waits for ends (busy is their union).
# Usage: timeline_steps.sh FP4KIT_BINARY TESTS_DATA_DIR (neither is used)
set -euo pipefail
command -v python3 >/dev/null || { echo "python3 is not installed"; exit 77; }
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Both timelines; op(kind, start, end, name, extent, api_end) adds an operation and its launch call.
python3 - "$dir/t.csv" "$dir/overlap.csv" <<'PY'
import sys
def timeline(path, passes, per_pass):
    rows, c = ["type,start_ns,end_ns,correlation,name,extent"], 0
    def op(kind, start, end, name, extent, api_end):
        nonlocal c
        c += 1
        rows.append(f"R,{start - 9000},{api_end},{c},cudaLaunchKernel,")
        rows.append(f"{kind},{start},{end},{c},{name},{extent}")
    for p in range(passes):
        per_pass(op, 100000 + 50000 * p)
    open(path, "w").write("\n".join(rows) + "\n")
def plain(op, b):
    op("C", b, b + 1000, "copy kind 1", 8, b - 3000)
    op("K", b + 2000, b + 7000, "_ZN6fp4kit4cuda19gather_widen_kernelEv", "1x1x1", b - 2000)
    op("K", b + 8000, b + 18000, "_Z3foov", "4x1x1", b - 1000)
    op("K", b + 22000, b + 28000, "_Z3barv", "2x1x1", b + 20000)  # returned after foo ended
    op("C", b + 29000, b + 30000, "copy kind 2", 8, b)
def overlapping(op, b):
    op("K", b, b + 2000, "_ZN6fp4kit4cuda19gather_widen_kernelEv", "1x1x1", b - 8000)
    op("K", b + 3000, b + 13000, "_Z3foov", "4x1x1", b - 7000)
    op("K", b + 10000, b + 16000, "_Z3bazv", "8x1x1", b - 6000)  # a dependent: started before foo ended
    op("C", b + 17000, b + 18000, "copy kind 2", 8, b - 5000)
timeline(sys.argv[1], 6, plain)
timeline(sys.argv[2], 4, overlapping)
PY
out=$(python3 "$root/bench/timeline_steps.py" "$dir/t.csv")
echo "$out"
grep -q "6 passes; 5 with the most common count of 5 device operations" <<<"$out" || fail "pass split"
grep -q "span 30.0, busy 23.0, idle 7.0 (waiting for a launch 4.0), lead from the previous pass 20.0; span + lead 50.0" \
  <<<"$out" || fail "per-pass times"
grep -Eq "^ +4\.00 +foo +-> +bar$" <<<"$out" || fail "the idle time before bar"
grep -Eq "^ +10\.00 +1× +foo +4x1x1$" <<<"$out" || fail "foo's busy time"
grep -Eq "^ +23\.00 +sum$" <<<"$out" || fail "the busy sum"
out=$(python3 "$root/bench/timeline_steps.py" "$dir/overlap.csv")
echo "$out"
grep -q "span 18.0, busy 16.0, idle 2.0 (waiting for a launch 0.0), lead from the previous pass 32.0; span + lead 50.0" \
  <<<"$out" || fail "per-pass times with overlapping kernels"
grep -Eq "^ +6\.00 +1× +baz +8x1x1$" <<<"$out" || fail "baz's own time, its wait included"

set +e
err=$(python3 "$root/bench/timeline_steps.py" "$dir/missing.csv" 2>&1)
code=$?
printf 'type,start_ns\nK,12\n' > "$dir/bad.csv"
err2=$(python3 "$root/bench/timeline_steps.py" "$dir/bad.csv" 2>&1)
code2=$?
set -e
[ $code -eq 1 ] && grep -q "missing.csv: No such file" <<<"$err" || fail "a missing file: $code $err"
[ $code2 -eq 1 ] && grep -q "bad.csv:2: not a timeline row" <<<"$err2" || fail "a malformed file: $code2 $err2"
echo "timeline_steps: ok"
