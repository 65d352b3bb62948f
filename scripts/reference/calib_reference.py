#!/usr/bin/env python3
"""Reference max calibration of a DeepSeek V4 checkpoint with transformers' DeepseekV4ForCausalLM
(CPU, float32, eager attention and experts): max |x| of the input of every linear projection that
fp4kit's `calibrate` records, for one batch of token ids.

    python3 scripts/reference/calib_reference.py --model tests/data/dsv4-tiny \
        --ids tests/data/calib/oracle/calib_ids.safetensors --out OUT_DIR [--expect ORACLE_DIR]

Writes into OUT_DIR F32 0-d tensors named `<official module>.input_amax`:
- amax_routed.safetensors: routed experts see only the tokens routed to them (w1 = w3 = max |x|
  over those tokens, w2 = max |h| with h = silu(min(g, limit)) * clamp(u, -limit, limit), the input
  of transformers' down projection, without routing weight). Experts that got no token have no
  entries (the report lists them).
- amax_all_experts.safetensors: every routed expert counted as if every token of its layer were
  sent to it (statistics only: the forward pass feeding the next layer stays the routed one).
- amax_routed_weighted_w2.safetensors: as amax_routed, but w2 = max |routing weight * h|, the input
  of w2 in DeepSeek's official Expert.forward.
- calib_report.json: tokens per expert per layer, experts with no tokens, checks, versions.
The attention entries are layers.N.attn.{wq_a,wq_b,wkv,wo_a,wo_b}, the shared expert
layers.N.ffn.shared_experts.w{1,2,3}, the routed experts layers.N.ffn.experts.E.w{1,2,3}.

How: forward pre-hooks on the attention and shared-expert projections. Each experts module gets,
on the instance only, a forward that calls the class's own (eager) forward unchanged and watches
its `_apply_gate` calls, which receive each visited expert's gate_up output and return its h.
The gathered tokens of expert E are found again from top_k_index the same way (slot-major).
--expect DIR compares the results bit for bit with DIR/amax_routed.safetensors,
DIR/amax_all_experts.safetensors and the w2_weighted values of DIR/calib_report.json; exit 1 on
any difference or failed check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dsv4_hf_model  # noqa: E402

ATTENTION_PROJECTIONS = {"q_a_proj": "wq_a", "q_b_proj": "wq_b", "kv_proj": "wkv", "o_a_proj": "wo_a", "o_b_proj": "wo_b"}
SHARED_PROJECTIONS = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}


def f32_bits(t: torch.Tensor) -> int:
    return struct.unpack("<I", struct.pack("<f", float(t)))[0]


class AmaxRecorder:
    """Collects the statistics of every forward pass run while it is installed."""

    def __init__(self, model, input_ids: torch.Tensor):
        self.model = model
        self.input_ids = input_ids
        self.layers = model.model.layers
        self.n_experts = model.config.num_local_experts
        self.amax: dict[str, torch.Tensor] = {}            # attention and shared expert
        self.routed: dict[str, torch.Tensor] = {}          # routed experts, unweighted
        self.routed_weighted_w2: dict[str, torch.Tensor] = {}
        self.all_experts: dict[str, torch.Tensor] = {}     # routed experts, every token
        self.counts = {i: [0] * self.n_experts for i in range(len(self.layers))}
        self.gate_over_limit = {i: 0 for i in range(len(self.layers))}
        self.shared_pre = {i: {"max_gate": None, "max_abs_up": None} for i in range(len(self.layers))}
        self.hash_routing_is_tid2eid: dict[int, bool] = {}
        self.problems: list[str] = []
        self._handles = []
        self._patched = []

    @staticmethod
    def _keep_max(store: dict, key: str, value: torch.Tensor) -> None:
        value = value.detach().to(torch.float32).reshape(())
        store[key] = value.clone() if key not in store else torch.maximum(store[key], value)

    def install(self) -> None:
        for n, layer in enumerate(self.layers):
            attn = layer.self_attn
            for module_name, entry in ATTENTION_PROJECTIONS.items():
                self._pre_hook(getattr(attn, module_name), f"layers.{n}.attn.{entry}.input_amax")
            shared = layer.mlp.shared_experts
            for module_name, entry in SHARED_PROJECTIONS.items():
                self._pre_hook(getattr(shared, module_name), f"layers.{n}.ffn.shared_experts.{entry}.input_amax")
            self._handles.append(shared.gate_proj.register_forward_hook(self._shared_output_hook(n, "max_gate")))
            self._handles.append(shared.up_proj.register_forward_hook(self._shared_output_hook(n, "max_abs_up")))
            self._patch_experts(n, layer.mlp)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for experts in self._patched:
            del experts.forward
        self._patched.clear()

    def _pre_hook(self, module, entry: str) -> None:
        def hook(_module, args):
            self._keep_max(self.amax, entry, args[0].abs().amax())
        self._handles.append(module.register_forward_pre_hook(hook))

    def _shared_output_hook(self, n: int, what: str):
        def hook(_module, _args, output):
            value = (output.max() if what == "max_gate" else output.abs().max()).item()
            old = self.shared_pre[n][what]
            self.shared_pre[n][what] = value if old is None else max(old, value)
        return hook

    def _patch_experts(self, n: int, moe) -> None:
        experts = moe.experts
        experts_class = type(experts)
        limit = float(experts.limit)
        intermediate = experts.gate_up_proj.shape[1] // 2
        recorder = self

        def watched_forward(hidden_states, top_k_index, top_k_weights):
            seen: list[tuple[torch.Tensor, torch.Tensor]] = []

            def watched_apply_gate(gate_up):
                h = experts_class._apply_gate(experts, gate_up)
                seen.append((gate_up, h))
                return h

            experts._apply_gate = watched_apply_gate
            try:
                out = experts_class.forward(experts, hidden_states, top_k_index, top_k_weights)
            finally:
                del experts._apply_gate
            with torch.no_grad():
                recorder._record_experts(n, moe, hidden_states, top_k_index, top_k_weights, seen, limit, intermediate)
            return out

        experts.forward = watched_forward
        self._patched.append(experts)

    def _record_experts(self, n, moe, x, top_k_index, top_k_weights, seen, limit, intermediate) -> None:
        experts = moe.experts
        prefix = f"layers.{n}.ffn.experts."
        hit = [e for e in range(self.n_experts) if bool((top_k_index == e).any())]
        if len(seen) != len(hit):
            raise RuntimeError(f"layer {n}: the eager experts loop called _apply_gate {len(seen)} times "
                               f"for {len(hit)} experts with tokens")
        # The eager loop visits the experts with tokens in ascending id, and gathers the tokens of
        # expert e slot by slot: (slot, token) pairs of top_k_index == e in row-major order of [k, T].
        for (gate_up, h), e in zip(seen, hit):
            slot, token = torch.where((top_k_index == e).transpose(0, 1))
            if h.shape[0] != token.numel():
                raise RuntimeError(f"layer {n} expert {e}: _apply_gate saw {h.shape[0]} rows, "
                                   f"{token.numel()} tokens are routed to it")
            self.counts[n][e] += int(token.numel())
            self.gate_over_limit[n] += int((gate_up[:, :intermediate] > limit).sum())
            x_amax = x[token].abs().amax()
            for w in ("w1", "w3"):
                self._keep_max(self.routed, f"{prefix}{e}.{w}.input_amax", x_amax)
            self._keep_max(self.routed, f"{prefix}{e}.w2.input_amax", h.abs().amax())
            weighted = h * top_k_weights[token, slot, None]
            self._keep_max(self.routed_weighted_w2, f"{prefix}{e}.w2.input_amax", weighted.abs().amax())
        # Every token through every expert, on the side.
        x_all = x.abs().amax()
        for e in range(self.n_experts):
            for w in ("w1", "w3"):
                self._keep_max(self.all_experts, f"{prefix}{e}.{w}.input_amax", x_all)
            h_all = type(experts)._apply_gate(experts, F.linear(x, experts.gate_up_proj[e]))
            self._keep_max(self.all_experts, f"{prefix}{e}.w2.input_amax", h_all.abs().amax())
        if getattr(moe, "is_hash", False):
            expected = moe.gate.tid2eid[self.input_ids.reshape(-1)].long()
            ok = torch.equal(top_k_index.long(), expected)
            self.hash_routing_is_tid2eid[n] = self.hash_routing_is_tid2eid.get(n, True) and ok


def read_ids(path: str, vocab: int) -> torch.Tensor:
    tensors = dsv4_hf_model.read_safetensors_typed(path)
    if "input_ids" not in tensors:
        raise SystemExit(f"{path}: no tensor input_ids")
    dtype, ids = tensors["input_ids"]
    if dtype != "I64" or ids.dim() != 2 or ids.numel() == 0:
        raise SystemExit(f"{path}: input_ids must be I64 [B, S], got {dtype} {list(ids.shape)}")
    if int(ids.min()) < 0 or int(ids.max()) >= vocab:
        raise SystemExit(f"{path}: input_ids outside [0, {vocab})")
    return ids


def write_amax(path: str, entries: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file
    tmp = path + ".tmp"
    save_file({k: entries[k].reshape(()).contiguous() for k in sorted(entries)}, tmp, metadata=metadata)
    os.replace(tmp, path)


def compare_amax(mine: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict:
    common = sorted(set(mine) & set(theirs))
    differ = [k for k in common if f32_bits(mine[k]) != f32_bits(theirs[k])]
    max_abs = max((abs(float(mine[k]) - float(theirs[k])) for k in common), default=0.0)
    return {
        "n_mine": len(mine),
        "n_expected": len(theirs),
        "only_mine": sorted(set(mine) - set(theirs)),
        "only_expected": sorted(set(theirs) - set(mine)),
        "n_differ": len(differ),
        "differ": differ[:10],
        "max_abs": max_abs,
        "bit_identical": not differ and set(mine) == set(theirs),
    }


def check_identities(rec: AmaxRecorder, n_layers: int, n_experts: int) -> dict:
    out = {}
    for n in range(n_layers):
        a, r, al = rec.amax, rec.routed, rec.all_experts
        attn, shared, experts = f"layers.{n}.attn.", f"layers.{n}.ffn.shared_experts.", f"layers.{n}.ffn.experts."
        out[f"L{n}_wq_a_eq_wkv"] = f32_bits(a[attn + "wq_a.input_amax"]) == f32_bits(a[attn + "wkv.input_amax"])
        out[f"L{n}_shared_w1_eq_w3"] = f32_bits(a[shared + "w1.input_amax"]) == f32_bits(a[shared + "w3.input_amax"])
        all_w1 = al[experts + "0.w1.input_amax"]
        out[f"L{n}_shared_w1_eq_all_experts_w1"] = f32_bits(a[shared + "w1.input_amax"]) == f32_bits(all_w1)
        routed_w1 = [r[f"{experts}{e}.w1.input_amax"] for e in range(n_experts) if f"{experts}{e}.w1.input_amax" in r]
        out[f"L{n}_routed_w1_eq_w3"] = all(
            f32_bits(r[f"{experts}{e}.w1.input_amax"]) == f32_bits(r[f"{experts}{e}.w3.input_amax"])
            for e in range(n_experts) if f"{experts}{e}.w1.input_amax" in r)
        out[f"L{n}_max_routed_w1_eq_all_w1"] = f32_bits(torch.stack(routed_w1).max()) == f32_bits(all_w1)
        excess = 0.0
        for e in range(n_experts):
            key = f"{experts}{e}.w2.input_amax"
            if key in r:
                excess = max(excess, (float(r[key]) - float(al[key])) / float(al[key]))
        out[f"L{n}_routed_w2_minus_all_w2_max_rel"] = excess
    return out


def run(args) -> int:
    start = time.time()
    model, load_info = dsv4_hf_model.load_model(args.model)
    config = model.config
    n_layers, n_experts, top_k = config.num_hidden_layers, config.num_local_experts, config.num_experts_per_tok
    ids = read_ids(args.ids, config.vocab_size)
    with open(args.ids, "rb") as f:
        ids_sha256 = hashlib.sha256(f.read()).hexdigest()

    plain = dsv4_hf_model.logits_of(model, ids)
    rec = AmaxRecorder(model, ids)
    rec.install()
    try:
        recorded = dsv4_hf_model.logits_of(model, ids)
    finally:
        rec.remove()
    after = dsv4_hf_model.logits_of(model, ids)

    routed = dict(rec.amax)
    routed.update(rec.routed)
    all_experts = dict(rec.amax)
    all_experts.update(rec.all_experts)
    weighted = dict(routed)
    weighted.update(rec.routed_weighted_w2)

    tokens = ids.numel()
    empty = {n: [e for e in range(n_experts) if rec.counts[n][e] == 0] for n in range(n_layers)}
    identities = check_identities(rec, n_layers, n_experts)
    checks = {
        "logits_with_recorder_equal_plain": bool(torch.equal(recorded, plain)),
        "logits_after_removal_equal_plain": bool(torch.equal(after, plain)),
        "tokens_per_layer_times_k": all(sum(rec.counts[n]) == tokens * top_k for n in range(n_layers)),
        "hash_routing_is_tid2eid": all(rec.hash_routing_is_tid2eid.values()),
        "identities": all(v is True for k, v in identities.items() if not k.endswith("_max_rel")),
        # h of one token can differ in the last bit between a GEMM over the routed tokens and one over
        # all tokens; beyond that the routed value can never exceed the all-experts one.
        "routed_w2_le_all_w2_within_1e-6": all(v <= 1e-6 for k, v in identities.items() if k.endswith("_max_rel")),
        "all_experts_complete": len(all_experts) == n_layers * (5 + 3 + 3 * n_experts),
    }

    versions = dsv4_hf_model.versions()
    os.makedirs(args.out, exist_ok=True)
    meta = {
        "source": "transformers DeepseekV4ForCausalLM, eager attention and experts, max calibration",
        "device": "cpu", "dtype": "float32",
        "model": os.path.basename(os.path.normpath(args.model)),
        "ids_shape": json.dumps(list(ids.shape)), "ids_sha256": ids_sha256,
        "torch": versions["torch"], "transformers": versions["transformers"], "safetensors": versions["safetensors"],
    }
    variants = {
        "amax_routed.safetensors": ("routed", routed),
        "amax_all_experts.safetensors": ("all_experts", all_experts),
        "amax_routed_weighted_w2.safetensors": ("routed_weighted_w2", weighted),
    }
    for file_name, (variant, entries) in variants.items():
        write_amax(os.path.join(args.out, file_name), entries, dict(meta, variant=variant))

    report = {
        "model": meta["model"],
        "load": load_info,
        "ids": {"file_sha256": ids_sha256, "shape": list(ids.shape), "sum": int(ids.sum()),
                "first_row_head": ids[0, :8].tolist()},
        "config": {"layers": n_layers, "experts": n_experts, "top_k": top_k,
                   "swiglu_limit": float(config.swiglu_limit),
                   "layer_types": list(config.layer_types), "mlp_layer_types": list(config.mlp_layer_types)},
        "tokens_per_layer": tokens,
        "counts": {str(n): rec.counts[n] for n in range(n_layers)},
        "empty_experts": {str(n): empty[n] for n in range(n_layers)},
        "n_empty_experts": sum(len(v) for v in empty.values()),
        "routed_gate_values_over_limit": {str(n): rec.gate_over_limit[n] for n in range(n_layers)},
        "shared_pre_activations": {str(n): rec.shared_pre[n] for n in range(n_layers)},
        "hash_routing_is_tid2eid": {str(n): v for n, v in rec.hash_routing_is_tid2eid.items()},
        "identities": identities,
        "checks": checks,
        "n_entries": {"routed": len(routed), "all_experts": len(all_experts), "routed_weighted_w2": len(weighted)},
        "w2_weighted": {k: float(v) for k, v in sorted(rec.routed_weighted_w2.items())},
        "versions": versions,
    }

    passed = all(checks.values())
    if args.expect:
        from safetensors.torch import load_file
        expected = {}
        for file_name, mine in (("amax_routed.safetensors", routed), ("amax_all_experts.safetensors", all_experts)):
            expected[file_name] = compare_amax(mine, load_file(os.path.join(args.expect, file_name)))
        with open(os.path.join(args.expect, "calib_report.json")) as f:
            expect_report = json.load(f)
        if "w2_weighted" in expect_report:
            theirs = {k: torch.tensor(v, dtype=torch.float32) for k, v in expect_report["w2_weighted"].items()}
            expected["calib_report.json:w2_weighted"] = compare_amax(rec.routed_weighted_w2, theirs)
        if "counts" in expect_report:
            expected["calib_report.json:counts_equal"] = {
                "bit_identical": expect_report["counts"] == report["counts"]}
        report["expected"] = expected
        passed = passed and all(v["bit_identical"] for v in expected.values())
    report["pass"] = passed
    report["seconds"] = round(time.time() - start, 3)

    report_path = os.path.join(args.out, "calib_report.json")
    with open(report_path + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    os.replace(report_path + ".tmp", report_path)

    summary = {k: report[k] for k in ("counts", "empty_experts", "checks", "pass")}
    if "expected" in report:
        summary["expected"] = {k: {kk: v[kk] for kk in ("bit_identical", "n_differ", "only_mine", "only_expected")
                                   if kk in v} for k, v in report["expected"].items()}
    print(json.dumps(summary, indent=1))
    return 0 if passed else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint directory in the official layout")
    p.add_argument("--ids", required=True, help="safetensors with input_ids I64 [B, S]")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--expect", help="directory with amax_routed/amax_all_experts.safetensors and "
                                    "calib_report.json to compare with, bit for bit")
    return run(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
