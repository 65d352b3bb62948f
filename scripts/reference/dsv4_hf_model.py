#!/usr/bin/env python3
"""Load a DeepSeek V4 checkpoint in the official on-disk layout into Hugging Face transformers'
DeepseekV4ForCausalLM, on the CPU, in float32.

This is the reference model of tests/data/dsv4-tiny/README.md:
- every FP8 (E4M3 + E8M0 128x128 block scales) and MXFP4 (I8 packed, low nibble = even column,
  E8M0 scale per 1x32 group) weight is dequantized with DeepSeek's official formula into float32;
- tensors are renamed to transformers' names (conversion_mapping["deepseek_v4"]), routed experts
  stacked into gate_up_proj [E, 2I, H] (w1 rows, then w3 rows) and down_proj [E, H, I];
- the state dict is loaded with load_state_dict(strict=True) into a float32 model built from the
  checkpoint's config.json, with eager attention and eager experts; mtp.* is not used.

The checkpoint files are parsed here (safetensors header + raw bytes), so the dequantization does
not depend on torch's float8 support. Usable as a module (load_model) and as a script:

    python3 scripts/reference/dsv4_hf_model.py --model tests/data/dsv4-tiny \
        --check-reference tests/data/dsv4-tiny/reference.safetensors --out reference_check.json

checks that the loaded model reproduces the stored logits (exit 1 if the max abs diff exceeds
--tolerance, 0 by default: the CPU float32 run is deterministic).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import struct
import sys
import time

import torch

# ---------------------------------------------------------------------------------------------
# safetensors, read by hand

_PLAIN_DTYPES = {
    "F32": torch.float32,
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I8": torch.int8,
    "U8": torch.uint8,
}
_BYTE_DTYPES = {"F8_E4M3", "F8_E8M0"}  # kept as raw uint8 bytes, decoded by the tables below


def read_safetensors_typed(path: str) -> dict[str, tuple[str, torch.Tensor]]:
    """name -> (safetensors dtype, tensor) for every tensor of one file. Plain dtypes come back as
    torch tensors of that dtype, FP8 ones as uint8 tensors of their raw bytes."""
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        data = f.read()
    out: dict[str, tuple[str, torch.Tensor]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = entry["dtype"]
        if dtype in _BYTE_DTYPES:
            torch_dtype = torch.uint8
        elif dtype in _PLAIN_DTYPES:
            torch_dtype = _PLAIN_DTYPES[dtype]
        else:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        raw = bytearray(data[begin:end])
        t = torch.frombuffer(raw, dtype=torch_dtype) if raw else torch.empty(0, dtype=torch_dtype)
        out[name] = (dtype, t.reshape(entry["shape"]).clone())
    return out


def read_safetensors(path: str) -> dict[str, torch.Tensor]:
    return {name: t for name, (_, t) in read_safetensors_typed(path).items()}


def read_checkpoint(model_dir: str) -> dict[str, tuple[str, torch.Tensor]]:
    """name -> (dtype, tensor) for a checkpoint directory (sharded with
    model.safetensors.index.json, or one model.safetensors)."""
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            weight_map = json.load(f)["weight_map"]
        files = sorted(set(weight_map.values()))
    else:
        files = ["model.safetensors"]
        weight_map = None
    tensors: dict[str, tuple[str, torch.Tensor]] = {}
    for shard in files:
        for name, entry in read_safetensors_typed(os.path.join(model_dir, shard)).items():
            if name in tensors:
                raise ValueError(f"{model_dir}: tensor {name} appears in two shards")
            if weight_map is not None and weight_map.get(name) != shard:
                raise ValueError(f"{model_dir}/{shard}: tensor {name} is not mapped to this shard in the index")
            tensors[name] = entry
    if weight_map is not None and set(weight_map) != set(tensors):
        missing = sorted(set(weight_map) - set(tensors))
        raise ValueError(f"{model_dir}: index names tensors absent from the shards: {missing[:5]}")
    return tensors


# ---------------------------------------------------------------------------------------------
# Official dequantization (DeepSeek inference/convert.py, model.py)

def _e4m3fn_value(byte: int) -> float:
    sign = -1.0 if byte & 0x80 else 1.0
    exponent = (byte >> 3) & 0xF
    mantissa = byte & 0x7
    if exponent == 0xF and mantissa == 0x7:
        return math.nan
    if exponent == 0:
        return math.copysign(mantissa * 2.0 ** -9, sign)  # subnormal; 0x80 is -0.0
    return sign * (1.0 + mantissa / 8.0) * 2.0 ** (exponent - 7)


def _e8m0_value(byte: int) -> float:
    return math.nan if byte == 0xFF else math.ldexp(1.0, byte - 127)


# Every entry is exact in float32.
E4M3FN_TABLE = torch.tensor([_e4m3fn_value(b) for b in range(256)], dtype=torch.float32)
E8M0_TABLE = torch.tensor([_e8m0_value(b) for b in range(256)], dtype=torch.float32)
# The official FP4 table: code 0x8 decodes to +0.0.
FP4_TABLE = torch.tensor([0, .5, 1, 1.5, 2, 3, 4, 6, 0, -.5, -1, -1.5, -2, -3, -4, -6], dtype=torch.float32)

FP8_BLOCK = 128
FP4_GROUP = 32


def dequant_fp8(weight: torch.Tensor, scale: torch.Tensor, name: str) -> torch.Tensor:
    """W[i,j] = e4m3(weight[i,j]) * 2^(scale[i//128, j//128] - 127); ragged edge blocks keep
    the 128 stride (the last block simply has fewer rows or columns)."""
    rows, cols = weight.shape
    want = (math.ceil(rows / FP8_BLOCK), math.ceil(cols / FP8_BLOCK))
    if tuple(scale.shape) != want:
        raise ValueError(f"{name}: FP8 scale shape {list(scale.shape)}, expected {list(want)}")
    values = E4M3FN_TABLE[weight.long()]
    factors = E8M0_TABLE[scale.long()]
    factors = factors.repeat_interleave(FP8_BLOCK, dim=0)[:rows].repeat_interleave(FP8_BLOCK, dim=1)[:, :cols]
    return values * factors


def dequant_fp4(packed: torch.Tensor, scale: torch.Tensor, name: str) -> torch.Tensor:
    """Two E2M1 codes per byte, low nibble = even column; times 2^(scale[i, j//32] - 127)."""
    rows, half_cols = packed.shape
    cols = 2 * half_cols
    if tuple(scale.shape) != (rows, cols // FP4_GROUP) or cols % FP4_GROUP:
        raise ValueError(f"{name}: FP4 scale shape {list(scale.shape)}, expected {[rows, cols // FP4_GROUP]}")
    codes = packed.view(torch.uint8).long()
    low = FP4_TABLE[codes & 0xF]
    high = FP4_TABLE[codes >> 4]
    values = torch.stack([low, high], dim=-1).reshape(rows, cols)
    factors = E8M0_TABLE[scale.long()].repeat_interleave(FP4_GROUP, dim=1)
    return values * factors


def dequantize_checkpoint(tensors: dict[str, tuple[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], dict]:
    """Official names -> float32 (or int64 for tid2eid) tensors, quantized weights dequantized and
    their .scale tensors consumed."""
    out: dict[str, torch.Tensor] = {}
    counts = {"fp8": 0, "fp4": 0, "plain": 0}
    scales_used = set()
    for name, (dtype, t) in tensors.items():
        if name.endswith(".scale"):
            continue
        scale_name = name[: -len(".weight")] + ".scale" if name.endswith(".weight") else None
        if scale_name in tensors and tensors[scale_name][0] != "F8_E8M0":
            raise ValueError(f"{scale_name}: dtype {tensors[scale_name][0]}, expected F8_E8M0")
        if dtype == "F8_E4M3":
            if scale_name not in tensors:
                raise ValueError(f"{name}: F8_E4M3 weight without {scale_name}")
            out[name] = dequant_fp8(t, tensors[scale_name][1], name)
            scales_used.add(scale_name)
            counts["fp8"] += 1
        elif dtype == "I8" and scale_name in tensors:
            out[name] = dequant_fp4(t, tensors[scale_name][1], name)
            scales_used.add(scale_name)
            counts["fp4"] += 1
        elif dtype in ("BF16", "F16", "F32"):
            out[name] = t.to(torch.float32)
            counts["plain"] += 1
        elif dtype in ("I64", "I32"):
            out[name] = t.to(torch.int64)
            counts["plain"] += 1
        else:
            raise ValueError(f"{name}: unexpected dtype {dtype}")
    orphans = sorted(n for n in tensors if n.endswith(".scale") and n not in scales_used)
    if orphans:
        raise ValueError(f"scale tensors without a quantized weight: {orphans[:5]}")
    for name, t in out.items():
        if t.is_floating_point() and torch.isnan(t).any():
            raise ValueError(f"{name}: NaN after dequantization")
    return out, counts


# ---------------------------------------------------------------------------------------------
# Official names -> transformers names (conversion_mapping["deepseek_v4"])

_TOP_LEVEL = {
    "embed.weight": "model.embed_tokens.weight",
    "head.weight": "lm_head.weight",
    "norm.weight": "model.norm.weight",
    "hc_head_fn": "model.hc_head.hc_fn",
    "hc_head_base": "model.hc_head.hc_base",
    "hc_head_scale": "model.hc_head.hc_scale",
}

_PER_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "hc_attn_fn": "attn_hc.fn",
    "hc_attn_base": "attn_hc.base",
    "hc_attn_scale": "attn_hc.scale",
    "hc_ffn_fn": "ffn_hc.fn",
    "hc_ffn_base": "ffn_hc.base",
    "hc_ffn_scale": "ffn_hc.scale",
    "attn.wq_a.weight": "self_attn.q_a_proj.weight",
    "attn.q_norm.weight": "self_attn.q_a_norm.weight",
    "attn.wq_b.weight": "self_attn.q_b_proj.weight",
    "attn.wkv.weight": "self_attn.kv_proj.weight",
    "attn.kv_norm.weight": "self_attn.kv_norm.weight",
    "attn.wo_a.weight": "self_attn.o_a_proj.weight",
    "attn.wo_b.weight": "self_attn.o_b_proj.weight",
    "attn.attn_sink": "self_attn.sinks",
    "attn.compressor.wkv.weight": "self_attn.compressor.kv_proj.weight",
    "attn.compressor.wgate.weight": "self_attn.compressor.gate_proj.weight",
    "attn.compressor.ape": "self_attn.compressor.position_bias",
    "attn.compressor.norm.weight": "self_attn.compressor.kv_norm.weight",
    "attn.indexer.wq_b.weight": "self_attn.compressor.indexer.q_b_proj.weight",
    "attn.indexer.weights_proj.weight": "self_attn.compressor.indexer.scorer.weights_proj.weight",
    "attn.indexer.compressor.wkv.weight": "self_attn.compressor.indexer.kv_proj.weight",
    "attn.indexer.compressor.wgate.weight": "self_attn.compressor.indexer.gate_proj.weight",
    "attn.indexer.compressor.ape": "self_attn.compressor.indexer.position_bias",
    "attn.indexer.compressor.norm.weight": "self_attn.compressor.indexer.kv_norm.weight",
    "ffn.gate.weight": "mlp.gate.weight",
    "ffn.gate.bias": "mlp.gate.e_score_correction_bias",
    "ffn.gate.tid2eid": "mlp.gate.tid2eid",
    "ffn.shared_experts.w1.weight": "mlp.shared_experts.gate_proj.weight",
    "ffn.shared_experts.w2.weight": "mlp.shared_experts.down_proj.weight",
    "ffn.shared_experts.w3.weight": "mlp.shared_experts.up_proj.weight",
}

_LAYER_RE = re.compile(r"^layers\.(\d+)\.(.+)$")
_EXPERT_RE = re.compile(r"^ffn\.experts\.(\d+)\.(w[123])\.weight$")


def to_transformers_state_dict(official: dict[str, torch.Tensor], n_experts: int) -> dict[str, torch.Tensor]:
    """Rename, and stack the routed experts: gate_up_proj[e] = [w1; w3] ([2I, H]), down_proj[e] = w2."""
    out: dict[str, torch.Tensor] = {}
    experts: dict[int, dict[int, dict[str, torch.Tensor]]] = {}
    for name, t in official.items():
        if name.startswith("mtp."):
            continue  # transformers has no MTP module
        if name in _TOP_LEVEL:
            out[_TOP_LEVEL[name]] = t
            continue
        m = _LAYER_RE.match(name)
        if not m:
            raise ValueError(f"{name}: no transformers name for this tensor")
        layer, rest = int(m.group(1)), m.group(2)
        e = _EXPERT_RE.match(rest)
        if e:
            experts.setdefault(layer, {}).setdefault(int(e.group(1)), {})[e.group(2)] = t
            continue
        if rest not in _PER_LAYER:
            raise ValueError(f"{name}: no transformers name for this tensor")
        out[f"model.layers.{layer}.{_PER_LAYER[rest]}"] = t
    for layer, by_expert in experts.items():
        if sorted(by_expert) != list(range(n_experts)):
            raise ValueError(f"layers.{layer}: experts {sorted(by_expert)}, expected 0..{n_experts - 1}")
        gate_up, down = [], []
        for idx in range(n_experts):
            w = by_expert[idx]
            if set(w) != {"w1", "w2", "w3"}:
                raise ValueError(f"layers.{layer}.ffn.experts.{idx}: has {sorted(w)}, expected w1, w2, w3")
            gate_up.append(torch.cat([w["w1"], w["w3"]], dim=0))
            down.append(w["w2"])
        prefix = f"model.layers.{layer}.mlp.experts."
        out[prefix + "gate_up_proj"] = torch.stack(gate_up).contiguous()
        out[prefix + "down_proj"] = torch.stack(down).contiguous()
    return out


# ---------------------------------------------------------------------------------------------
# The model

def _set_eager(model) -> None:
    """Eager attention and the eager per-expert loop (the canonical CPU reference)."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:
        model.config._attn_implementation = "eager"
    if hasattr(model, "set_experts_implementation"):
        model.set_experts_implementation("eager")
    else:
        model.config._experts_implementation = "eager"
    if model.config._attn_implementation != "eager":
        raise RuntimeError(f"attention implementation is {model.config._attn_implementation}, not eager")
    if getattr(model.config, "_experts_implementation", "eager") != "eager":
        raise RuntimeError(f"experts implementation is {model.config._experts_implementation}, not eager")


def load_model(model_dir: str):
    """(model, info): DeepseekV4ForCausalLM on the CPU in float32, eval mode, eager attention and
    experts, holding the official-formula dequantization of the checkpoint in model_dir."""
    from transformers import AutoConfig, DeepseekV4ForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    if getattr(config, "quantization_config", None) is not None:
        # The weights handed over below are already dense float32: no quantizer may touch them.
        try:
            delattr(config, "quantization_config")
        except AttributeError:
            pass
    for attribute in ("_attn_implementation", "_experts_implementation"):
        try:
            setattr(config, attribute, "eager")
        except AttributeError:
            pass  # set on the model below

    previous_default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        model = DeepseekV4ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous_default)
    model = model.to(device="cpu", dtype=torch.float32).eval()
    _set_eager(model)

    official, counts = dequantize_checkpoint(read_checkpoint(model_dir))
    state = to_transformers_state_dict(official, config.num_local_experts)

    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise RuntimeError(f"{model_dir}: state dict does not fit DeepseekV4ForCausalLM: "
                           f"missing {missing}, unexpected {unexpected}")
    for key, t in state.items():
        if tuple(t.shape) != tuple(expected[key].shape):
            raise RuntimeError(f"{model_dir}: {key}: shape {list(t.shape)}, model wants {list(expected[key].shape)}")
    result = model.load_state_dict(state, strict=True)
    for key, t in model.state_dict().items():
        if t.is_floating_point() and t.dtype != torch.float32:
            raise RuntimeError(f"{key}: dtype {t.dtype} after loading, expected float32")
        if not torch.equal(t, state[key].to(t.dtype)):
            raise RuntimeError(f"{key}: differs from the dequantized checkpoint after loading")

    info = {
        "n_keys": len(state),
        "missing": list(result.missing_keys),
        "unexpected": list(result.unexpected_keys),
        "dequantized": counts,
        "skipped_mtp_tensors": sum(1 for n in official if n.startswith("mtp.")),
        "attn_implementation": model.config._attn_implementation,
        "experts_implementation": getattr(model.config, "_experts_implementation", None),
    }
    return model, info


def versions() -> dict:
    import transformers
    import safetensors
    v = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "cpu_threads": torch.get_num_threads(),
    }
    try:
        import numpy
        v["numpy"] = numpy.__version__
    except ImportError:
        pass
    return v


@torch.no_grad()
def logits_of(model, input_ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=input_ids, use_cache=False).logits


def _check_reference(args) -> int:
    start = time.time()
    model, info = load_model(args.model)
    ref = read_safetensors(args.check_reference)
    ids, want = ref["input_ids"], ref["logits"]
    got = logits_of(model, ids)
    diff = (got - want).abs().max().item()
    report = {
        "model": args.model,
        "reference": args.check_reference,
        "load": info,
        "input_ids_shape": list(ids.shape),
        "logits_shape": list(got.shape),
        "logits_max_abs_diff": diff,
        "logits_bit_identical": bool(torch.equal(got, want)),
        "argmax_equal": bool(torch.equal(got.argmax(-1), want.argmax(-1))),
        "tolerance": args.tolerance,
        "pass": diff <= args.tolerance,
        "versions": versions(),
        "seconds": round(time.time() - start, 3),
    }
    text = json.dumps(report, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0 if report["pass"] else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint directory in the official layout")
    p.add_argument("--check-reference", required=True,
                   help="safetensors with input_ids and logits to reproduce (the fixture's reference.safetensors)")
    p.add_argument("--tolerance", type=float, default=0.0, help="largest accepted max abs logit difference")
    p.add_argument("--out", help="write the JSON result here too")
    return _check_reference(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
