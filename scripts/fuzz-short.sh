#!/usr/bin/env bash
# A short libFuzzer session of every fuzz target of a FP4KIT_FUZZ=ON build, as the test suite runs it:
# each target starts from its seed corpus (fuzz/corpus/<name>/, read only: new inputs go to a scratch
# directory) for SECONDS seconds, JOBS targets at a time. Prints each target's final statistics; a
# crash, a sanitizer report, a FINDING or a timeout of an input fails the run, and the input that
# caused it is kept in ARTIFACTS (default BUILD_DIR/fuzz-findings/) with the target's log. The inputs a
# session found are left in BUILD_DIR/fuzz-work/ (they are not added to the seeds).
#
#   scripts/fuzz-short.sh BUILD_DIR [SECONDS] [JOBS] [ARTIFACTS]
set -uo pipefail
build=${1:?build directory of a FP4KIT_FUZZ=ON build}
seconds=${2:-25}
jobs=${3:-$(nproc)}
artifacts=${4:-$build/fuzz-findings}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$artifacts"
# The inputs a session adds, and its logs: inside the build directory, which nothing else cleans.
work=$build/fuzz-work
rm -rf "$work" && mkdir -p "$work"

# Per target: the longest input, and a dictionary where there is one (the settings of fuzz/README.md).
flags_for() {
  case $1 in
    safetensors_header) echo "-max_len=4096 -dict=$root/fuzz/safetensors.dict" ;;
    config_json) echo "-max_len=8192" ;;
    tokenizer_json) echo "-max_len=32768" ;;
    *) echo "-max_len=4096" ;;
  esac
}

run_one() {
  local name=$1 corpus=${1%_fuzz}
  mkdir -p "$work/$corpus"
  # -timeout: one input running longer than 10 s is a finding (a hang); -rss_limit_mb as in the long runs.
  "$build/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      $(flags_for "$corpus") -artifact_prefix="$artifacts/$name-" \
      "$work/$corpus" "$root/fuzz/corpus/$corpus" > "$work/$name.log" 2>&1
}

targets=()
for src in "$root"/fuzz/*_fuzz.cpp; do
  name=$(basename "$src" .cpp)
  if [ ! -x "$build/$name" ]; then
    echo "fuzz: $build/$name is missing (configure with CXX=clang++ -DFP4KIT_FUZZ=ON)"
    exit 2
  fi
  targets+=("$name")
done

pids=() names=() rc=0
report() {  # name, exit status
  local line
  line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$1.log" | tail -1)
  local execs
  execs=$(grep -E '^stat::number_of_executed_units:' "$work/$1.log" | awk '{print $2}')
  if [ "$2" -eq 0 ]; then
    echo "fuzz: $1: ${execs:-?} executions in $seconds s, no findings; ${line:-(no final line)}"
  else
    rc=1
    echo "== fuzz: $1 FAILED (exit $2); log: $artifacts/$1.log"
    cp "$work/$1.log" "$artifacts/$1.log"
    grep -E 'FINDING|ERROR: libFuzzer|==[0-9]+==ERROR|runtime error|SUMMARY:|Test unit written|ALARM' "$work/$1.log" | head -20
  fi
}
for name in "${targets[@]}"; do
  while [ ${#pids[@]} -ge "$jobs" ]; do
    wait "${pids[0]}"; report "${names[0]}" $?
    pids=("${pids[@]:1}") names=("${names[@]:1}")
  done
  run_one "$name" & pids+=($!) names+=("$name")
done
for i in "${!pids[@]}"; do wait "${pids[$i]}"; report "${names[$i]}" $?; done
exit $rc
