#!/usr/bin/env python3
"""transformers' DeepseekV4ForCausalLM in bfloat16 on the tiny fixture: the error a BF16 run of the
model has against its float32 run, which the GPU engine's BF16 mode is held to.

Run on the GPU machine (torch with CUDA, transformers >= 5.17), from the repository root:

    python3 scripts/reference/bf16_reference.py tests/data/dsv4-tiny tests/data/dsv4-tiny/reference_bf16.safetensors

The model is the fixture's reference model (dsv4_hf_model.load_model: official-formula float32
dequantization, eager attention and experts), first checked in float32 on the GPU against
reference.safetensors' logits (TF32 off), then cast as a whole with model.to(torch.bfloat16) —
weights, activations and every intermediate in BF16, as `torch_dtype=torch.bfloat16` loads it — and
run on reference.safetensors' input_ids. It writes:
  logits   BF16 [B, S, V]  the BF16 model's logits
and in the metadata (and a JSON report beside it) the statistics against the float32 logits of
reference.safetensors, computed in float64: mean and max KL(f32 || bf16) per position, top-1
agreement, max |logit difference|.
"""
import argparse
import json
import pathlib
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def stats(reference, logits):
    """KL(reference || logits) per position and top-1 agreement, in float64."""
    p = torch.log_softmax(reference.double(), -1)
    q = torch.log_softmax(logits.double(), -1)
    kl = (p.exp() * (p - q)).sum(-1).flatten()
    top1 = (reference.argmax(-1) == logits.argmax(-1)).flatten()
    return {
        "positions": kl.numel(),
        "kld_mean": kl.mean().item(),
        "kld_max": kl.max().item(),
        "top1_agree": int(top1.sum().item()),
        "max_abs_logit_diff": (reference.double() - logits.double()).abs().max().item(),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import dsv4_hf_model

    dev = torch.device(args.device)
    model, _ = dsv4_hf_model.load_model(args.model_dir)
    model = model.to(dev).eval()
    with safe_open(str(pathlib.Path(args.model_dir) / "reference.safetensors"), "pt") as f:
        ids, reference = f.get_tensor("input_ids"), f.get_tensor("logits")
    with torch.no_grad():
        f32 = model(input_ids=ids.to(dev), use_cache=False).logits.float().cpu()
    f32_diff = (f32 - reference).abs().max().item()
    assert f32_diff < 1e-4, f"float32 on {dev} does not reproduce reference.safetensors (max diff {f32_diff})"

    model = model.to(torch.bfloat16)
    with torch.no_grad():
        bf16 = model(input_ids=ids.to(dev), use_cache=False).logits.cpu()
    assert bf16.dtype == torch.bfloat16, bf16.dtype
    assert torch.isfinite(bf16.float()).all(), "non-finite BF16 logits"
    report = {"versions": dsv4_hf_model.versions(), "device": torch.cuda.get_device_name(dev) if dev.type == "cuda"
              else "cpu", "float32_check_max_abs_diff": f32_diff, "bf16_vs_float32": stats(reference, bf16.float())}
    metadata = {"run": "transformers DeepseekV4ForCausalLM, model.to(torch.bfloat16), eager, use_cache=False, "
                       "input_ids of reference.safetensors",
                "report": json.dumps(report)}
    save_file({"logits": bf16.contiguous()}, args.out, metadata=metadata)
    pathlib.Path(args.out).with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
