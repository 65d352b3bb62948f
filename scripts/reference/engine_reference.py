#!/usr/bin/env python3
"""Reference outputs of transformers' DeepseekV4ForCausalLM for cases the dsv4-tiny fixture does not cover.

Run on a machine with torch and transformers >= 5.17 (CPU float32 is the canonical run; a GPU only
speeds it up, use --device cuda with TF32 off):

    python scripts/reference/engine_reference.py tests/data/dsv4-tiny tests/data/dsv4-tiny/reference_long.safetensors

It writes (all F32 unless said):
  long.input_ids        I64 [1, 300]   one sequence long enough for two HCA entries (positions 127 and 255)
                                       and an indexer that picks 8 of up to 75 CSA entries
  long.logits           [1, 300, V]    use_cache=False
  long.hidden.layerN    [1, 300, hc, H] every decoder layer's output (all streams), N = 0..L-1
  long.router.N.indices I64 [1, 300, k] (sorted ascending) and long.router.N.weights [1, 300, k]
  chunked.logits        [300 - 200, V] the same sequence through the cache: prefill 200 tokens, then a
                                       chunk of 7, then one token at a time (multi-token continuation)
  amax.<module>         [1]            max |input| of every nn.Linear over long.input_ids, under the
                                       checkpoint's own module names (layers.N.attn.wq_a, ...); the
                                       routed experts are fused parameters in transformers and are
                                       not included
and a JSON report beside it (same name, .json) with versions, checks and the discrete-choice margins.
The loader is the one the fixture used: transformers' FineGrainedFP8 dequantizing loader, with the
wkv weights replaced by the official-formula dequantization (the loader mishandles ragged blocks).
Before writing anything the script checks that it reproduces reference.safetensors' logits.
"""
import argparse
import json
import pathlib

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file


def e8m0_to_float(t):
    return torch.pow(2.0, t.view(torch.uint8).to(torch.float32) - 127.0)


def dequant_fp8_block(weight, scale, block=128):
    w = weight.to(torch.float32)
    s = e8m0_to_float(scale) if scale.dtype != torch.float32 else scale
    s = s.repeat_interleave(block, 0)[: w.shape[0]].repeat_interleave(block, 1)[:, : w.shape[1]]
    return w * s


def load_model(model_dir, device):
    from transformers import AutoModelForCausalLM, FineGrainedFP8Config

    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, quantization_config=FineGrainedFP8Config(dequantize=True),
        attn_implementation="eager")
    index = json.load(open(pathlib.Path(model_dir) / "model.safetensors.index.json"))["weight_map"]
    for n in range(model.config.num_hidden_layers):
        name = f"layers.{n}.attn.wkv"
        with safe_open(pathlib.Path(model_dir) / index[name + ".weight"], "pt") as f:
            w = f.get_tensor(name + ".weight")
        with safe_open(pathlib.Path(model_dir) / index[name + ".scale"], "pt") as f:
            s = f.get_tensor(name + ".scale")
        model.model.layers[n].self_attn.kv_proj.weight.data.copy_(dequant_fp8_block(w, s))
    return model.to(device).eval()


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=20260502)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(args.device)
    model = load_model(args.model_dir, dev)
    cfg = model.config
    report = {"versions": {"torch": torch.__version__}, "checks": {}}
    import transformers
    report["versions"]["transformers"] = transformers.__version__

    # Sanity: the fixture's own reference logits.
    ref_path = pathlib.Path(args.model_dir) / "reference.safetensors"
    if ref_path.exists():
        with safe_open(ref_path, "pt") as f:
            ids, logits = f.get_tensor("input_ids"), f.get_tensor("logits")
        with torch.no_grad():
            got = model(input_ids=ids.to(dev), use_cache=False).logits.cpu()
        diff = (got - logits).abs().max().item()
        report["checks"]["fixture_logits_maxabs"] = diff
        assert diff < 1e-4, f"does not reproduce reference.safetensors (max diff {diff})"

    rng = np.random.default_rng(args.seed)
    S = 300
    ids = torch.tensor(rng.integers(2, cfg.vocab_size, size=(1, S)), dtype=torch.int64)
    ids[0, 0] = 0
    out = {"long.input_ids": ids.clone()}

    # Full forward with hidden states, router choices and linear-input amax.
    amax, hooks, router = {}, [], {}
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
        hooks.append(layer.mlp.gate.register_forward_hook(gate_hook))
    with torch.no_grad():
        res = model(input_ids=ids.to(dev), use_cache=False, output_hidden_states=True)
    for h in hooks:
        h.remove()
    out["long.logits"] = res.logits.float().cpu()
    for n in range(cfg.num_hidden_layers):
        out[f"long.hidden.layer{n}"] = res.hidden_states[n + 1].float().cpu().contiguous()
        outp = router[n]
        # The router returns (logits, weights, indices) or (weights, indices) depending on the class.
        tensors = [t for t in (outp if isinstance(outp, tuple) else (outp,)) if torch.is_tensor(t)]
        idx = [t for t in tensors if not t.is_floating_point()][-1].reshape(1, S, -1).cpu()
        w = [t for t in tensors if t.is_floating_point() and t.shape[-1] == idx.shape[-1]][-1].reshape(1, S, -1).float().cpu()
        order = idx.argsort(-1)
        out[f"long.router.{n}.indices"] = idx.gather(-1, order).contiguous()
        out[f"long.router.{n}.weights"] = w.gather(-1, order).contiguous()
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

    save_file({k: v.contiguous() for k, v in out.items()}, args.out)
    report["keys"] = {k: [list(v.shape), str(v.dtype)] for k, v in out.items()}
    pathlib.Path(args.out).with_suffix(".json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report["checks"], indent=1))


if __name__ == "__main__":
    main()
