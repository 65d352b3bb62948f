#!/usr/bin/env python3
"""Tiny checkpoints of other model families, as Hugging Face transformers writes them, for
fp4kit's convert tests (tests/data/families/). Needs torch, transformers and safetensors.

  python3 scripts/reference/family_fixtures.py OUT_DIR

Writes OUT_DIR/{llama-tiny, qwen3-moe-tiny, dsv3-tiny}/:
  - llama-tiny:      LlamaForCausalLM, BF16, grouped-query attention (q/k/v of different widths).
  - qwen3-moe-tiny:  Qwen3MoeForCausalLM, BF16, 4 routed experts per layer, router `mlp.gate`.
  - dsv3-tiny:       DeepseekV3ForCausalLM with q LoRA, one dense and one MoE layer, then stored the
                     way DeepSeek's V3 release stores it: every linear weight inside the decoder
                     layers F8_E4M3 with a float32 `weight_scale_inv` per 128x128 block (ragged
                     edges: hidden 192), an MTP layer `model.layers.N` (N = num_hidden_layers) with
                     enorm/hnorm/eh_proj/shared_head, and the release's quantization_config.
Each directory holds config.json, model.safetensors (+ index for dsv3-tiny, in two shards so that
fused partners sit in different files) and weights that are random but deterministic (seed 0).
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import (DeepseekV3Config, DeepseekV3ForCausalLM, LlamaConfig, LlamaForCausalLM,
                          Qwen3MoeConfig, Qwen3MoeForCausalLM)


def per_expert_state_dict(model):
    """The model's tensors under the per-expert names the hub checkpoints use
    (`mlp.experts.E.{gate,up,down}_proj.weight`), whatever layout the in-memory model has."""
    sd = {}
    for name, t in model.state_dict().items():
        t = t.detach().to(torch.bfloat16).contiguous()
        if ".mlp.experts." in name and t.dim() == 3:
            prefix, leaf = name.split(".mlp.experts.")
            leaf = leaf.removesuffix(".weight")
            for e in range(t.shape[0]):
                w = t[e]
                if leaf == "gate_up_proj":
                    # [2I, H] (gate rows first) or [H, 2I]: the hub layout is [I, H] per projection.
                    if w.shape[0] != 2 * model.config.moe_intermediate_size:
                        w = w.t()
                    i = w.shape[0] // 2
                    sd[f"{prefix}.mlp.experts.{e}.gate_proj.weight"] = w[:i].contiguous()
                    sd[f"{prefix}.mlp.experts.{e}.up_proj.weight"] = w[i:].contiguous()
                elif leaf == "down_proj":
                    if w.shape[0] != model.config.hidden_size:
                        w = w.t()
                    sd[f"{prefix}.mlp.experts.{e}.down_proj.weight"] = w.contiguous()
                else:
                    raise SystemExit(f"unexpected fused expert tensor {name} {tuple(t.shape)}")
            continue
        sd[name] = t
    return sd


def save(out, sd, config, shards=None):
    os.makedirs(out, exist_ok=True)
    config.save_pretrained(out)
    if shards is None:
        save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    total = 0
    for i, names in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        part = {n: sd[n] for n in names}
        save_file(part, os.path.join(out, fname), metadata={"format": "pt"})
        for n, t in part.items():
            weight_map[n] = fname
            total += t.numel() * t.element_size()
    assert set(weight_map) == set(sd), "every tensor in one shard"
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)


def fp8_blocks(w, block=128):
    """DeepSeek V3's storage: e4m3 values and a float32 scale_inv per 128x128 block (amax/448)."""
    w = w.float()
    n, k = w.shape
    bn, bk = (n + block - 1) // block, (k + block - 1) // block
    scale = torch.empty(bn, bk, dtype=torch.float32)
    q = torch.empty(n, k, dtype=torch.float8_e4m3fn)
    for i in range(bn):
        for j in range(bk):
            blk = w[i * block:(i + 1) * block, j * block:(j + 1) * block]
            s = blk.abs().amax().clamp(min=1e-12) / 448.0
            scale[i, j] = s
            q[i * block:(i + 1) * block, j * block:(j + 1) * block] = (blk / s).to(torch.float8_e4m3fn)
    return q, scale


def llama(out):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                      tie_word_embeddings=False, torch_dtype="bfloat16")
    model = LlamaForCausalLM(cfg)
    save(out, per_expert_state_dict(model), cfg)


def qwen3_moe(out):
    torch.manual_seed(0)
    cfg = Qwen3MoeConfig(vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1, mlp_only_layers=[],
                         max_position_embeddings=256, tie_word_embeddings=False, torch_dtype="bfloat16")
    model = Qwen3MoeForCausalLM(cfg)
    save(out, per_expert_state_dict(model), cfg)


def dsv3(out):
    torch.manual_seed(0)
    cfg = DeepseekV3Config(vocab_size=256, hidden_size=192, intermediate_size=256, moe_intermediate_size=96,
                           num_hidden_layers=2, first_k_dense_replace=1, num_attention_heads=4,
                           num_key_value_heads=4, n_shared_experts=1, n_routed_experts=4, num_experts_per_tok=2,
                           n_group=1, topk_group=1, kv_lora_rank=64, q_lora_rank=96, qk_rope_head_dim=16,
                           qk_nope_head_dim=32, v_head_dim=32, max_position_embeddings=256,
                           tie_word_embeddings=False, torch_dtype="bfloat16",
                           # The release's routing fields: vLLM creates the router's
                           # e_score_correction_bias only with topk_method noaux_tc.
                           topk_method="noaux_tc", scoring_func="sigmoid")
    model = DeepseekV3ForCausalLM(cfg)
    sd = per_expert_state_dict(model)
    # The release's MTP layer: a copy of the last decoder layer under index num_hidden_layers, plus
    # its own embedding, norms, projection and head (as in DeepSeek-V3's README_WEIGHTS.md).
    last, mtp = cfg.num_hidden_layers - 1, cfg.num_hidden_layers
    g = torch.Generator().manual_seed(1)
    for name in list(sd):
        if name.startswith(f"model.layers.{last}."):
            sd[name.replace(f"model.layers.{last}.", f"model.layers.{mtp}.", 1)] = sd[name].clone()
    h = cfg.hidden_size
    sd[f"model.layers.{mtp}.embed_tokens.weight"] = sd["model.embed_tokens.weight"].clone()
    sd[f"model.layers.{mtp}.enorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
    sd[f"model.layers.{mtp}.hnorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
    sd[f"model.layers.{mtp}.eh_proj.weight"] = (torch.randn(h, 2 * h, generator=g) * 0.02).to(torch.bfloat16)
    sd[f"model.layers.{mtp}.shared_head.norm.weight"] = torch.ones(h, dtype=torch.bfloat16)
    sd[f"model.layers.{mtp}.shared_head.head.weight"] = sd["lm_head.weight"].clone()
    # FP8 blocks for every linear weight inside the decoder layers, as the release stores them
    # (the routers `mlp.gate`, norms, embeddings, eh_proj and heads stay BF16).
    fp8 = {}
    for name, t in sd.items():
        if not name.startswith("model.layers.") or not name.endswith(".weight") or t.dim() != 2:
            continue
        if any(k in name for k in ("norm.", ".mlp.gate.", "embed_tokens", "eh_proj", "shared_head")):
            continue
        q, s = fp8_blocks(t)
        fp8[name] = q
        fp8[name.removesuffix(".weight") + ".weight_scale_inv"] = s
    sd.update(fp8)
    for name, t in sd.items():
        if name.startswith("model.layers.") and "e_score_correction_bias" in name:
            sd[name] = t.float()
    cfg.num_nextn_predict_layers = 1
    cfg.quantization_config = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                               "weight_block_size": [128, 128]}
    # Two shards: layer 0 and the head in the first, the rest in the second, except the MoE
    # layer's up_proj weights, which go to the first: fused partners in different files.
    first = [n for n in sd if n.startswith("model.layers.0.") or n.startswith("model.embed") or
             (".mlp.experts." in n and ".up_proj." in n and n.startswith("model.layers.1."))]
    second = [n for n in sd if n not in set(first)]
    save(out, sd, cfg, shards=[sorted(first), sorted(second)])


def main():
    root = sys.argv[1]
    for name, make in (("llama-tiny", llama), ("qwen3-moe-tiny", qwen3_moe), ("dsv3-tiny", dsv3)):
        out = os.path.join(root, name)
        make(out)
        size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
        print(f"{name}: {len(os.listdir(out))} files, {size} bytes")


if __name__ == "__main__":
    main()
