#!/usr/bin/env python3
"""transformers' own BF16 DeepSeek V4 decoder layers on the GPU, timed per layer: the speed the GPU
engine's per-layer compute is measured against.

Run on the GPU machine (torch with CUDA, transformers >= 5.17), from the repository root, on the
config.json of a checkpoint (e.g. one `fp4kit synth v4-flash` wrote):

    python3 scripts/reference/layer_timing.py MODEL_DIR OUT.json [--layers 3] [--batch 16] [--seq 512]

The model is DeepseekV4ForCausalLM built from MODEL_DIR/config.json with its first --layers
decoder layers (per-layer lists of the config cut to match), randomly initialised by transformers,
directly on the GPU in bfloat16 — weights resident, as `torch_dtype=torch.bfloat16` loads a
checkpoint. The hash-routing tables (integer tensors) get random distinct experts per token, so
the routed experts see the spread of tokens a trained table gives. The fastest attention and
experts implementations the installed transformers accepts are used (recorded in the output).

Each decoder layer is timed with CUDA events from forward hooks, over --repeat forward passes
after --warmup passes, on random token ids [batch, seq]; the JSON holds per layer its kind,
the median milliseconds and tokens/s, and the implementations, versions and GPU.
"""
import argparse
import json
import pathlib
import statistics
import tempfile

import torch


def cut_config(model_dir: str, layers: int) -> str:
    """A copy of config.json with `layers` decoder layers, in a temporary directory."""
    cfg = json.loads((pathlib.Path(model_dir) / "config.json").read_text())
    n = cfg["num_hidden_layers"]
    for key, value in list(cfg.items()):
        # Per-layer lists (compress ratios, layer types) keep their first `layers` entries; a list
        # with extra entries for the next-token-prediction layers keeps those too.
        if isinstance(value, list) and len(value) >= n and key not in ("architectures",):
            cfg[key] = value[:layers] + value[n:]
    cfg["num_hidden_layers"] = layers
    cfg.pop("quantization_config", None)
    out = tempfile.mkdtemp(prefix="layer-timing-")
    (pathlib.Path(out) / "config.json").write_text(json.dumps(cfg))
    return out


def try_implementation(model, setter: str, names):
    """The first of `names` the model accepts for set_attn_implementation / set_experts_implementation."""
    fn = getattr(model, setter, None)
    if fn is None:
        return None
    for name in names:
        try:
            fn(name)
            return name
        except Exception:  # not available in this build
            continue
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import transformers
    from transformers import AutoConfig, DeepseekV4ForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(cut_config(args.model_dir, args.layers))
    dev = torch.device("cuda")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with dev:
            model = DeepseekV4ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model = model.to(device=dev, dtype=torch.bfloat16).eval()

    experts = getattr(config, "num_local_experts", None) or getattr(config, "n_routed_experts")
    top_k = config.num_experts_per_tok
    filled = []
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.dtype in (torch.int32, torch.int64) and t.dim() == 2 and t.shape[-1] == top_k:
            table = torch.rand(t.shape[0], experts, device=dev).argsort(dim=-1)[:, :top_k]
            with torch.no_grad():
                t.copy_(table.to(t.dtype))
            filled.append(name)

    attention = try_implementation(model, "set_attn_implementation", ["sdpa", "flex_attention", "eager"])
    experts_impl = try_implementation(model, "set_experts_implementation", ["grouped_mm", "batched_mm", "eager"])

    layers = model.model.layers
    starts, ends = {}, {}

    def pre_hook(i):
        def hook(module, inputs, kwargs=None):
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            starts.setdefault(i, []).append(e)
        return hook

    def post_hook(i):
        def hook(module, inputs, output):
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            ends.setdefault(i, []).append(e)
        return hook

    for i, layer in enumerate(layers):
        layer.register_forward_pre_hook(pre_hook(i))
        layer.register_forward_hook(post_hook(i))

    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq), device=dev)

    def forward():
        with torch.inference_mode():
            model.model(input_ids=ids, use_cache=False)

    for _ in range(args.warmup):
        forward()
    torch.cuda.synchronize()
    starts.clear(), ends.clear()
    for _ in range(args.repeat):
        forward()
    torch.cuda.synchronize()

    tokens = args.batch * args.seq
    kinds = getattr(config, "layer_types", None) or [None] * args.layers
    rows = []
    for i in range(len(layers)):
        ms = [s.elapsed_time(e) for s, e in zip(starts[i], ends[i])]
        med = statistics.median(ms)
        rows.append({"layer": i, "kind": kinds[i] if i < len(kinds) else None, "ms": ms, "median_ms": med,
                     "tokens_per_second": tokens / (med / 1e3)})
        print(f"layer {i} ({rows[-1]['kind']}): {med:.1f} ms, {tokens / (med / 1e3):,.0f} tokens/s")
    report = {
        "model_dir": args.model_dir,
        "batch": args.batch, "seq": args.seq, "tokens": tokens, "repeat": args.repeat,
        "attention_implementation": attention, "experts_implementation": experts_impl,
        "hash_tables_filled": filled,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(),
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "transformers": transformers.__version__,
        "layers": rows,
    }
    pathlib.Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
