#!/usr/bin/env bash
# Runs a GoogleTest binary in a few long-lived processes, N at a time, instead of one process per
# test: in the sanitized build, every process start costs ASan's set-up (0.2 s here), which over
# ~800 tests was a quarter of the suite's time. The tests go to the processes by test suite, each
# suite whole in one process, so that a suite's shared set-up (the XᵀX statistics of the GPTQ
# tests, the reference forward pass of the engine tests, SetUpTestSuite) runs once and not once per
# process (with gtest's own sharding, which deals the tests out one by one, it ran in every
# process). The suites of tests/long_suites.txt run first, each in a process of its own; the other
# suites follow in groups of about the same number of tests, each group started when a process
# ends. Prints the failures of every process (gtest's brief output) and then the tests that skipped
# themselves with the reason they printed; exits non-zero if any process failed or ran past TIMEOUT
# seconds (default 1500).
#
#   scripts/run-gtest-shards.sh BINARY [N] [-- extra gtest flags, e.g. --gtest_filter=...]
set -uo pipefail
bin=${1:?gtest binary}
shards=${2:-$(nproc)}
shift $(( $# >= 2 ? 2 : 1 ))
[ "${1:-}" = "--" ] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
logs=$(mktemp -d)

# The tests to run (the extra flags' filter applied), as suite -> "Suite.Test" names.
if ! "$bin" --gtest_list_tests "$@" > "$logs/list" 2> "$logs/list.err"; then
  echo "$bin --gtest_list_tests failed:"; cat "$logs/list" "$logs/list.err"
  exit 1
fi
declare -A tests_of count_of
suites=()
suite=
while IFS= read -r line; do
  line=${line%%  #*}
  case $line in
    "  "*) tests_of[$suite]+="${tests_of[$suite]:+:}$suite.${line#  }"; count_of[$suite]=$(( ${count_of[$suite]} + 1 )) ;;
    *.) suite=${line%.}; suites+=("$suite"); tests_of[$suite]=; count_of[$suite]=0 ;;
  esac
done < "$logs/list"
# Flags other than the filter go to every process; the filter becomes each process's test names.
args=()
for a in "$@"; do [[ $a == --gtest_filter=* ]] || args+=("$a"); done

# The jobs: the long suites first (in the file's order), then the rest in groups.
jobs=()
declare -A taken
while read -r cost pattern _; do
  [[ $cost =~ ^[0-9]+$ ]] || continue
  for s in "${suites[@]}"; do
    [ -z "${taken[$s]:-}" ] && [ "${count_of[$s]}" -gt 0 ] && [[ "$s.x" == $pattern ]] || continue
    jobs+=("${tests_of[$s]}"); taken[$s]=1
  done
done < "$root/tests/long_suites.txt"
rest=0
for s in "${suites[@]}"; do [ -z "${taken[$s]:-}" ] && rest=$(( rest + ${count_of[$s]} )); done
group_size=$(( (rest + 4 * shards - 1) / (4 * shards) ))
group= in_group=0
for s in "${suites[@]}"; do
  [ -z "${taken[$s]:-}" ] && [ "${count_of[$s]}" -gt 0 ] || continue
  group+="${group:+:}${tests_of[$s]}"; in_group=$(( in_group + ${count_of[$s]} ))
  if [ "$in_group" -ge "$group_size" ]; then jobs+=("$group"); group= in_group=0; fi
done
[ -n "$group" ] && jobs+=("$group")

run_job() {  # index
  timeout "${TIMEOUT:-1500}" "$bin" "${args[@]}" --gtest_filter="${jobs[$1]}" > "$logs/$1.log" 2>&1
  echo $? > "$logs/$1.rc"
}
running=0
for i in "${!jobs[@]}"; do
  while [ "$running" -ge "$shards" ]; do wait -n; running=$(( running - 1 )); done
  run_job "$i" &
  running=$(( running + 1 ))
done
wait

rc=0
for i in "${!jobs[@]}"; do
  r=$(cat "$logs/$i.rc" 2>/dev/null || echo "?")
  if [ "$r" != 0 ]; then
    rc=1
    first=${jobs[$i]%%:*}
    echo "== process $i of ${#jobs[@]} (${first%%.*} ...): exit $r"
    # The failures gtest lists, and the last test started (a crash or a sanitizer report ends a process).
    grep -E "^\[  FAILED  \]|Failure|^==[0-9]+==ERROR|runtime error|SUMMARY:" "$logs/$i.log" | head -60
    grep -E "^\[ RUN      \]" "$logs/$i.log" | tail -1
  fi
done
listed=0
for s in "${suites[@]}"; do listed=$(( listed + ${count_of[$s]} )); done
passed=$(cat "$logs"/[0-9]*.log | grep -cE "^\[       OK \]")
failed=$(cat "$logs"/[0-9]*.log | grep -cE "^\[  FAILED  \] [A-Za-z]")
echo "gtest: $passed passed, $failed failed of $listed tests (${#jobs[@]} processes, $shards at a time)"
# Skipped tests with their reasons: gtest prints "file:line: Skipped", the reason, then "[  SKIPPED ] Name".
cat "$logs"/[0-9]*.log | awk '
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
