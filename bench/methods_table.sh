# Sourced by bench/methods_tiny.sh and bench/methods_fullsize_gpu.sh: methods_table prints one row per
# block-scale method, with and without GPTQ: convert's time, verify's verdict, and eval's mean KLD,
# top-1 and 99th-percentile KLD against the source. Uses FP4KIT, SRC, WORK (XᵀX in $WORK/xtx, base
# logits in $WORK/base.safetensors), EVAL (eval's flags), CONVERT_EXTRA (flags for every convert)
# and GPTQ_EXTRA (flags for the GPTQ rows); METHODS (default: all four) picks the rows' --scales.
# The output directory is left as $WORK/out.
methods_table() {
  printf '| %-14s | %-5s | %9s | %8s | %9s | %6s | %s |\n' "--scales" "gptq" "convert s" "verify" "mean KLD" "top-1" "99% KLD"
  printf '|%s|%s|---:|---|---:|---:|---:|\n' "----------------" "-------"
  local scales gptq flags start end ok out="$WORK/out"
  for scales in ${METHODS:-max mse four-over-six hessian}; do
    for gptq in no yes; do
      flags="--recipe all-linear --weight-only --scales $scales --quiet ${CONVERT_EXTRA:-}"
      if [ "$scales" = hessian ] || [ "$gptq" = yes ]; then flags="$flags --hessian $WORK/xtx"; fi
      if [ "$scales" = hessian ]; then flags="$flags --hessian-missing mse"; fi
      if [ "$gptq" = yes ]; then flags="$flags --gptq --gptq-missing rtn ${GPTQ_EXTRA:-}"; fi
      rm -rf "$out"
      start=$(date +%s.%N)
      # shellcheck disable=SC2086
      "$FP4KIT" convert "$SRC" "$out" $flags
      end=$(date +%s.%N)
      if "$FP4KIT" verify "$out" --source "$SRC" --quiet > /dev/null; then ok=pass; else ok=FAIL; fi
      # shellcheck disable=SC2086
      "$FP4KIT" eval "$out" --base "$SRC" $EVAL --base-logits "$WORK/base.safetensors" --json "$WORK/eval.json" > /dev/null
      python3 - "$WORK/eval.json" "$scales" "$gptq" "$start" "$end" "$ok" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = r["statistics"]
k = s["kld"]
p99 = next(p["value"] for p in k["percentiles"] if p["fraction"] == 0.99)
print(f"| {sys.argv[2]:14s} | {sys.argv[3]:5s} | {float(sys.argv[5]) - float(sys.argv[4]):9.2f} | {sys.argv[6]:8s} | "
      f"{k['mean']:9.5f} | {100 * s['top1']['value']:5.1f}% | {p99:.4f} |")
PY
    done
  done
}
