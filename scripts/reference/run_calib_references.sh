#!/usr/bin/env bash
# Reference outputs for fp4kit's calibration tests, from Hugging Face transformers'
# DeepseekV4ForCausalLM on the CPU in float32 (eager attention and experts). Needs python3 with
# torch, transformers (with DeepSeek V4: 5.17 was used) and safetensors. Run from the repository root:
#
#   scripts/reference/run_calib_references.sh [OUT_ROOT]      (default: $OUT, else ./calib-references)
#
# 1. The loader (dsv4_hf_model.py) reproduces tests/data/dsv4-tiny/reference.safetensors logits
#    (max abs diff must be 0).
# 2. calib_reference.py on the oracle batch tests/data/calib/oracle/calib_ids.safetensors gives
#    amax_routed and amax_all_experts bit-identical to the oracle files, and weighted w2 values
#    bit-identical to the oracle report's w2_weighted.
# 3. calib_reference.py on a 1 x 6 batch (the first 6 ids of the oracle batch's first row), in which
#    some experts get no tokens. Causal attention makes these 6 positions compute what they compute
#    inside the oracle batch, so every value must be at most the oracle's (up to rounding).
# Writes OUT_ROOT/calib/{reference_check.json, oracle/, no-token-experts/}; stops at the first
# failed check with a non-zero exit status.
set -euo pipefail

root="${1:-${OUT:-calib-references}}/calib"
model=tests/data/dsv4-tiny
oracle=tests/data/calib/oracle
here=scripts/reference
short="$root/no-token-experts"
mkdir -p "$root/oracle" "$short"

echo "== 1. loader vs the fixture's reference logits"
python3 "$here/dsv4_hf_model.py" --model "$model" --check-reference "$model/reference.safetensors" \
    --out "$root/reference_check.json" | grep -E '"(logits_max_abs_diff|logits_bit_identical|pass)"'

echo "== 2. oracle batch, bit for bit against $oracle"
python3 "$here/calib_reference.py" --model "$model" --ids "$oracle/calib_ids.safetensors" \
    --out "$root/oracle" --expect "$oracle"

echo "== 3. 1 x 6 batch with experts that get no tokens"
python3 - "$oracle/calib_ids.safetensors" "$short/calib_ids.safetensors" <<'EOF'
import sys
import torch
from safetensors.torch import load_file, save_file

source, target = sys.argv[1], sys.argv[2]
ids = load_file(source)["input_ids"][:1, :6].clone()
if ids.dtype != torch.int64 or ids.shape != (1, 6) or ids[0, 0].item() != 0:
    sys.exit(f"{source}: expected I64 ids starting with BOS 0, got {ids.dtype} {list(ids.shape)}")
save_file({"input_ids": ids}, target,
          metadata={"rule": "first 6 ids of row 0 of tests/data/calib/oracle/calib_ids.safetensors"})
print("input_ids", ids.tolist())
EOF
python3 "$here/calib_reference.py" --model "$model" --ids "$short/calib_ids.safetensors" --out "$short"

python3 - "$short" "$oracle" <<'EOF'
import json
import os
import sys
from safetensors.torch import load_file

short, oracle = sys.argv[1], sys.argv[2]
with open(os.path.join(short, "calib_report.json")) as f:
    report = json.load(f)
if report["n_empty_experts"] == 0:
    sys.exit("no expert is without tokens in the short batch")
worst = {}
for name in ("amax_routed.safetensors", "amax_all_experts.safetensors"):
    mine, theirs = load_file(os.path.join(short, name)), load_file(os.path.join(oracle, name))
    extra = sorted(set(mine) - set(theirs))
    if extra:
        sys.exit(f"{name}: entries absent from the oracle: {extra[:5]}")
    ratio = max(float(mine[k]) / float(theirs[k]) for k in mine)
    worst[name] = ratio
    if ratio > 1 + 1e-5:
        sys.exit(f"{name}: a value exceeds the oracle's by the ratio {ratio}")
print(json.dumps({"empty_experts": report["empty_experts"],
                  "max_ratio_to_oracle": worst}, indent=1))
EOF
echo "== all checks passed; outputs in $root"
