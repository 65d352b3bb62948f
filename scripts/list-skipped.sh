#!/usr/bin/env bash
# The tests ctest ran in BUILD_DIR that skipped themselves (GTEST_SKIP), each with the reason it
# printed, grouped by reason: what a green run did not check. Reads the last ctest log.
#
#   scripts/list-skipped.sh BUILD_DIR
set -uo pipefail
log=${1:?build directory}/Testing/Temporary/LastTest.log
[ -f "$log" ] || { echo "list-skipped: no ctest log at $log"; exit 0; }
awk '
  /^[0-9]+\/[0-9]+ Test: / { name = $3 }
  /: Skipped$/ { want = 1; next }
  want { reason[$0] = reason[$0] (reason[$0] == "" ? "" : " ") name; count[$0]++; total++; want = 0 }
  END {
    if (total == 0) { print "skipped tests: none"; exit }
    print "skipped tests: " total
    for (r in reason) print "  " count[r] " skipped: " r "\n    " reason[r]
  }' "$log"
