#!/usr/bin/env python3
"""Reference outputs of transformers' DeepseekV4ForCausalLM for cases the dsv4-tiny fixture does not cover.

Run on a machine with torch and transformers >= 5.17 (CPU float32 is the canonical run; a GPU only
speeds it up, use --device cuda with TF32 off):

    python3 scripts/reference/engine_reference.py tests/data/dsv4-tiny reference_long.safetensors

It writes (all F32 unless said):
  long.input_ids        I64 [1, 300]   one sequence long enough for two HCA entries (positions 127 and 255)
                                       and an indexer that picks 8 of up to 75 CSA entries
  long.logits           [1, 300, V]    use_cache=False
  long.hidden_positions I64 [P]        the positions whose hidden streams are stored (HIDDEN_POSITIONS)
  long.hidden.layerN    [1, P, hc, H]  decoder layer N's output (all streams) at those positions
  long.router.N.indices I64 [1, 300, k] (sorted ascending) and long.router.N.weights [1, 300, k]
  chunked.logits        [300 - 200, V] the same sequence through the cache: prefill 200 tokens, then a
                                       chunk of 7, then one token at a time (multi-token continuation)
  amax.<module>         [1]            max |input| of every nn.Linear over long.input_ids, under the
                                       checkpoint's own module names (layers.N.attn.wq_a, ...); the
                                       routed experts are fused parameters and the router is not an
                                       nn.Linear in transformers, so neither is included
and a JSON report beside it (same name, .json) with versions, checks and the discrete-choice margins
(smallest gap at the expert top-k boundary, smallest relative gap at the indexer top-k boundary).
The model is the fixture's own reference model (dsv4_hf_model.load_model: official-formula float32
dequantization, eager attention and experts). Before writing anything the script checks that it
reproduces reference.safetensors' logits.
"""
import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file


def load_model(model_dir, device):
    """The fixture's reference model (dsv4_hf_model.py beside this file): official-formula float32
    dequantization loaded into DeepseekV4ForCausalLM with eager attention and experts."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import dsv4_hf_model

    model, info = dsv4_hf_model.load_model(str(model_dir))
    return model.to(device).eval(), info, dsv4_hf_model.versions()


HF_TO_CKPT = {
    "self_attn.q_a_proj": "attn.wq_a", "self_attn.q_b_proj": "attn.wq_b", "self_attn.kv_proj": "attn.wkv",
    "self_attn.o_a_proj": "attn.wo_a", "self_attn.o_b_proj": "attn.wo_b",
    "self_attn.compressor.kv_proj": "attn.compressor.wkv", "self_attn.compressor.gate_proj": "attn.compressor.wgate",
    "self_attn.compressor.indexer.q_b_proj": "attn.indexer.wq_b",
    "self_attn.compressor.indexer.scorer.weights_proj": "attn.indexer.weights_proj",
    "self_attn.compressor.indexer.kv_proj": "attn.indexer.compressor.wkv",
    "self_attn.compressor.indexer.gate_proj": "attn.indexer.compressor.wgate",
    "mlp.gate": "ffn.gate", "mlp.shared_experts.gate_proj": "ffn.shared_experts.w1",
    "mlp.shared_experts.up_proj": "ffn.shared_experts.w3", "mlp.shared_experts.down_proj": "ffn.shared_experts.w2",
}


def checkpoint_name(hf_name):
    parts = hf_name.split(".")
    if len(parts) < 4 or parts[0] != "model" or parts[1] != "layers":
        return None
    rest = ".".join(parts[3:])
    return f"layers.{parts[2]}.{HF_TO_CKPT[rest]}" if rest in HF_TO_CKPT else None


# Positions whose per-layer hidden streams are stored (all 300 would make the file 2.4 MB larger):
# the start, the sliding window's edge (64), both HCA windows closing (127, 255), the prefill/chunk
# boundaries of the cached run (200, 207) and the end.
HIDDEN_POSITIONS = [0, 1, 2, 3, 62, 63, 64, 65, 125, 126, 127, 128, 129, 199, 200, 201, 206, 207, 208,
                    253, 254, 255, 256, 257, 296, 297, 298, 299]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=20260502)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    start = time.time()
    dev = torch.device(args.device)
    model, load_info, versions = load_model(args.model_dir, dev)
    cfg = model.config
    report = {"versions": versions, "device": str(dev), "load": load_info, "checks": {}, "margins": {}}

    # Sanity: the fixture's own reference logits.
    ref_path = pathlib.Path(args.model_dir) / "reference.safetensors"
    if ref_path.exists():
        with safe_open(ref_path, "pt") as f:
            ids, logits = f.get_tensor("input_ids"), f.get_tensor("logits")
        with torch.no_grad():
            got = model(input_ids=ids.to(dev), use_cache=False).logits.cpu()
        diff = (got - logits).abs().max().item()
        report["checks"]["fixture_logits_maxabs"] = diff
        report["checks"]["fixture_logits_bit_identical"] = bool(torch.equal(got, logits))
        assert diff < 1e-4, f"does not reproduce reference.safetensors (max diff {diff})"

    rng = np.random.default_rng(args.seed)
    S = 300
    ids = torch.tensor(rng.integers(2, cfg.vocab_size, size=(1, S)), dtype=torch.int64)
    ids[0, 0] = 0
    out = {"long.input_ids": ids.clone()}

    # Full forward with hidden states, router choices, indexer scores and linear-input amax.
    # Hidden states come from hooks on the decoder layers: output_hidden_states replaces the last
    # layer's streams with the final normed state.
    amax, hooks, router, hidden, index_scores = {}, [], {}, {}, {}
    for name, mod in model.named_modules():
        ck = checkpoint_name(name)
        if ck and isinstance(mod, torch.nn.Linear):
            def pre(m, inp, ck=ck):
                a = inp[0].detach().abs().max().float().cpu()
                amax[ck] = torch.maximum(amax.get(ck, a), a)
            hooks.append(mod.register_forward_pre_hook(pre))
    for n, layer in enumerate(model.model.layers):
        def gate_hook(m, inp, outp, n=n):
            router[n] = outp
        def layer_hook(m, inp, outp, n=n):
            hidden[n] = (outp[0] if isinstance(outp, tuple) else outp).detach()
        hooks.append(layer.mlp.gate.register_forward_hook(gate_hook))
        hooks.append(layer.register_forward_hook(layer_hook))
        comp = getattr(layer.self_attn, "compressor", None)
        if comp is not None and hasattr(comp, "indexer"):
            def scorer_hook(m, inp, outp, n=n):
                index_scores[n] = outp.detach()
            hooks.append(comp.indexer.scorer.register_forward_hook(scorer_hook))
    with torch.no_grad():
        res = model(input_ids=ids.to(dev), use_cache=False)
    for h in hooks:
        h.remove()
    out["long.logits"] = res.logits.float().cpu()
    positions = torch.tensor(HIDDEN_POSITIONS, dtype=torch.int64)
    out["long.hidden_positions"] = positions
    for n in range(cfg.num_hidden_layers):
        h = hidden[n].float().cpu()
        assert h.shape == (1, S, cfg.hc_mult, cfg.hidden_size), f"layer {n} output shape {list(h.shape)}"
        out[f"long.hidden.layer{n}"] = h[:, positions].contiguous()
        report["checks"][f"hidden_layer{n}_maxabs"] = h.abs().max().item()
        # The router returns (logits, weights, indices).
        logits_n, w, idx = router[n]
        idx = idx.reshape(1, S, -1).cpu()
        w = w.reshape(1, S, -1).float().cpu()
        order = idx.argsort(-1)
        out[f"long.router.{n}.indices"] = idx.gather(-1, order).contiguous()
        out[f"long.router.{n}.weights"] = w.gather(-1, order).contiguous()
        gate = model.model.layers[n].mlp.gate
        if hasattr(gate, "e_score_correction_bias"):  # score routing: gap at the top-k boundary
            biased = (gate.score_fn(logits_n.float()) + gate.e_score_correction_bias.float()).sort(-1, descending=True).values
            k = idx.shape[-1]
            report["margins"][f"router.{n}.min_gap"] = (biased[:, k - 1] - biased[:, k]).min().item()
    for n, scores in index_scores.items():
        # Relative gap between the top_k-th and next visible entry, over queries that see more than top_k.
        indexer = model.model.layers[n].self_attn.compressor.indexer
        ratio, k = indexer.compress_rate, indexer.index_topk
        s = scores[0].float().cpu()
        gaps = []
        for t in range(S):
            visible = (t + 1) // ratio
            if visible > k:
                top = s[t, :visible].sort(descending=True).values
                gaps.append(((top[k - 1] - top[k]) / top[k - 1].abs().clamp_min(1e-30)).item())
        report["margins"][f"indexer.{n}.min_relative_gap"] = min(gaps) if gaps else None
        report["margins"][f"indexer.{n}.queries_choosing"] = len(gaps)
    for k, v in amax.items():
        out["amax." + k] = v.reshape(1).contiguous()

    # Chunked cached decoding: prefill 200, a chunk of 7, then single tokens.
    with torch.no_grad():
        r = model(input_ids=ids[:, :200].to(dev), use_cache=True)
        cache, steps, pos = r.past_key_values, [], 200
        r = model(input_ids=ids[:, 200:207].to(dev), past_key_values=cache, use_cache=True)
        steps.append(r.logits[0].float().cpu())
        cache, pos = r.past_key_values, 207
        while pos < S:
            r = model(input_ids=ids[:, pos:pos + 1].to(dev), past_key_values=cache, use_cache=True)
            steps.append(r.logits[0].float().cpu())
            cache, pos = r.past_key_values, pos + 1
    out["chunked.logits"] = torch.cat(steps, 0).contiguous()
    report["checks"]["chunked_vs_full_maxabs"] = (out["chunked.logits"] - out["long.logits"][0, 200:]).abs().max().item()
    report["checks"]["long_logits_maxabs"] = out["long.logits"].abs().max().item()

    save_file({k: v.contiguous() for k, v in out.items()}, args.out)
    report["keys"] = {k: [list(v.shape), str(v.dtype)] for k, v in out.items()}
    report["seconds"] = round(time.time() - start, 1)
    pathlib.Path(args.out).with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({"checks": report["checks"], "margins": report["margins"]}, indent=1))


if __name__ == "__main__":
    main()
