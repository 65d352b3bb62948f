#!/usr/bin/env bash
# Runs a GoogleTest binary as N shards in parallel, each shard one process running its tests one
# after the other, instead of one process per test: in the sanitized build, every process start costs
# ASan's set-up (0.2 s here), which over ~700 tests was a quarter of the suite's time. Prints the
# failures of every shard (gtest's brief output) and then the tests that skipped themselves with the
# reason they printed; exits non-zero if any shard failed or ran past TIMEOUT seconds (default 1500).
#
#   scripts/run-gtest-shards.sh BINARY [SHARDS] [-- extra gtest flags]
set -uo pipefail
bin=${1:?gtest binary}
shards=${2:-$(nproc)}
shift $(( $# >= 2 ? 2 : 1 ))
[ "${1:-}" = "--" ] && shift
logs=$(mktemp -d)
pids=()
for (( i = 0; i < shards; i++ )); do
  GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i timeout "${TIMEOUT:-1500}" "$bin" "$@" > "$logs/$i.log" 2>&1 &
  pids+=($!)
done
rc=0
for (( i = 0; i < shards; i++ )); do
  wait "${pids[$i]}"
  r=$?
  if [ $r -ne 0 ]; then
    rc=1
    echo "== shard $i of $shards: exit $r"
    # The failures gtest lists, and the last test started (a crash or a sanitizer report ends a shard).
    grep -E "^\[  FAILED  \]|Failure|^==[0-9]+==ERROR|runtime error|SUMMARY:" "$logs/$i.log" | head -60
    grep -E "^\[ RUN      \]" "$logs/$i.log" | tail -1
  fi
done
passed=$(cat "$logs"/*.log | grep -cE "^\[       OK \]")
failed=$(cat "$logs"/*.log | grep -cE "^\[  FAILED  \] [A-Za-z]")
echo "gtest shards: $passed passed, $failed failed (in $shards processes)"
# Skipped tests with their reasons: gtest prints "file:line: Skipped", the reason, then "[  SKIPPED ] Name".
cat "$logs"/*.log | awk '
  /: Skipped$/ { want = 1; next }
  want && !/^\[/ { reason = $0; want = 0; next }
  /^\[  SKIPPED \] [A-Za-z].* \(/ { name = $4; r = (reason == "" ? "(no reason printed)" : reason);
    list[r] = list[r] (list[r] == "" ? "" : " ") name; count[r]++; total++; reason = "" }
  END {
    if (total == 0) { print "skipped tests: none"; exit }
    print "skipped tests: " total
    for (r in list) print "  " count[r] " skipped: " r "\n    " list[r]
  }'
rm -rf "$logs"
exit $rc
