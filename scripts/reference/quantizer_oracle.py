#!/usr/bin/env python3
"""An oracle from outside fp4kit for the FP8-block and MXFP4 quantizers that `fp4kit synth` uses to
write DeepSeek-style source checkpoints (src/formats/fp8_block.h, src/formats/mxfp4.h).

- FP8 blocks (128x128, E4M3 values): the scale rule of DeepSeek's quantization as fp8_block.h states
  it (E8M0: 2^ceil(log2(max(amax, 1e-4) / 448)), the exact ceiling; F32: max(amax, 1e-4) / 448), and
  the E4M3 rounding by torch's own cast to torch.float8_e4m3fn (x / s clamped to +-448 first). The
  inputs include values that land exactly on E4M3 rounding ties, E4M3 subnormals, all-zero and
  tiny blocks, huge values, and ragged edge blocks.
- MXFP4 (32-element groups, E8M0 scales, E2M1 codes): ModelOpt's own MXFP4QTensor.quantize
  (modelopt/torch/quantization/qtensor/mxfp4_tensor.py), loaded from the git-ignored .ref-src/ copy
  (see scale_search_reference.py for how to make it) with its base class stubbed (quantize uses
  only its constructor). ModelOpt's rule is DeepSeek's on these inputs but not everywhere: it rounds
  ties towards zero (DeepSeek and fp4kit: to even), gives 0 the code 0x8, and floors the scale at
  2^-127 (DeepSeek: 2^-126). So the MXFP4 inputs are random normals scaled per row, and this script
  checks that none of them divides to a tie or is zero (exit 1 otherwise); the tie rule is tested by
  hand elsewhere (tests/formats).

Run from the repository root on a machine with torch (CPU is enough):

    python3 scripts/reference/quantizer_oracle.py --out tests/data/oracles/quantizers

It writes OUT/quantizer_oracle.safetensors and OUT/quantizer_oracle.json (versions, the ModelOpt
commit and the git blob of mxfp4_tensor.py, per-case counts).
"""
import argparse
import hashlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[2]
E4M3_MAX = 448.0


def git_blob(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def load_mxfp4_qtensor(modelopt_root: Path):
    path = modelopt_root / "modelopt" / "torch" / "quantization" / "qtensor" / "mxfp4_tensor.py"
    if not path.exists():
        sys.exit(f"{path}: no ModelOpt sources; populate .ref-src/ as scale_search_reference.py says")

    class BaseQuantizedTensor:  # stub: quantize() only constructs one
        def __init__(self, original_shape, original_dtype, quantized_data):
            self.metadata = {"shape": original_shape, "dtype": original_dtype}
            self._quantized_data = quantized_data

    for name in ("mo", "mo.qtensor"):
        pkg = types.ModuleType(name)
        pkg.__path__ = []
        sys.modules[name] = pkg
    base = types.ModuleType("mo.qtensor.base_qtensor")
    base.BaseQuantizedTensor = BaseQuantizedTensor
    sys.modules["mo.qtensor.base_qtensor"] = base
    spec = importlib.util.spec_from_file_location("mo.qtensor.mxfp4_tensor", path)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "mo.qtensor"
    spec.loader.exec_module(module)
    return module.MXFP4QTensor, path


def e8m0_exponent_ceil(amax: torch.Tensor, top: float) -> torch.Tensor:
    """The least integer k with top * 2^k >= amax (float64, exact: top * 2^k is exact)."""
    a = amax.double()
    k = torch.ceil(torch.log2(a / top))
    for _ in range(3):  # log2's rounding: step to the exact answer
        k = torch.where(top * torch.exp2(k - 1) >= a, k - 1, k)
        k = torch.where(top * torch.exp2(k) < a, k + 1, k)
    return k


def fp8_block_quantize(x: torch.Tensor, e8m0: bool):
    rows, cols = x.shape
    br, bc = (rows + 127) // 128, (cols + 127) // 128
    q = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    scales = torch.empty(br, bc, dtype=torch.uint8 if e8m0 else torch.float32)
    for i in range(br):
        for j in range(bc):
            block = x[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128].float()
            amax = torch.clamp(block.abs().max(), min=1e-4)
            if e8m0:
                k = e8m0_exponent_ceil(amax, E4M3_MAX)
                s = torch.exp2(k).float()
                scales[i, j] = int(k.item()) + 127
            else:
                s = amax / E4M3_MAX
                scales[i, j] = s
            q[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = torch.clamp(block / s, -E4M3_MAX, E4M3_MAX).to(
                torch.float8_e4m3fn)
    return q.view(torch.uint8), scales


def fp8_inputs(gen: torch.Generator) -> torch.Tensor:
    """[200, 300] BF16: ragged edge blocks, every adversarial kind in its own 128x128 block."""
    x = torch.randn(200, 300, generator=gen) * torch.exp2(torch.randint(-8, 8, (200, 1), generator=gen).float())
    # Block (0, 1): exact E4M3 ties after an E8M0 scale. amax 448 * 2^-3 gives s = 2^-3; the values
    # are s * (midpoints between neighbouring E4M3 values), which BF16 holds exactly.
    mids = []
    for e in range(-6, 8):
        for m in range(8):
            lo = (1 + m / 8) * 2.0 ** e
            hi = lo + 2.0 ** (e - 3)
            if hi <= E4M3_MAX:
                mids.append((lo + hi) / 2)
    sub = [(k + 0.5) * 2.0 ** -9 for k in range(7)]  # ties between E4M3 subnormals
    vals = torch.tensor(mids + sub) * 2.0 ** -3
    block = x[0:128, 128:256]
    flat = block.reshape(-1)
    flat[:] = vals.repeat(flat.numel() // vals.numel() + 1)[: flat.numel()] * torch.where(
        torch.arange(flat.numel()) % 2 == 0, 1.0, -1.0)
    flat[0] = E4M3_MAX * 2.0 ** -3
    x[0:128, 128:256] = flat.reshape(block.shape)
    # Block (0, 2) (ragged, 44 columns): zeros only. Block (1, 0): tiny values (amax < 1e-4).
    x[0:128, 256:300] = 0.0
    x[128:200, 0:128] = torch.randn(72, 128, generator=gen) * 1e-7
    # Block (1, 1): huge values. Block (1, 2): a wide dynamic range (E4M3 subnormals).
    x[128:200, 128:256] = torch.randn(72, 128, generator=gen) * 1e30
    x[128:200, 256:300] = torch.randn(72, 44, generator=gen) * torch.exp2(
        torch.randint(-20, 1, (72, 44), generator=gen).float())
    return x.to(torch.bfloat16)


def mxfp4_inputs(gen: torch.Generator) -> torch.Tensor:
    """[64, 256] BF16 random normals, each row at its own power-of-two magnitude (2^-20 .. 2^20)."""
    x = torch.randn(64, 256, generator=gen) * torch.exp2(torch.randint(-20, 21, (64, 1), generator=gen).float())
    return x.to(torch.bfloat16)


def break_mxfp4_ties(x: torch.Tensor) -> torch.Tensor:
    """BF16 has 8 significant bits, so some quotients x / s land exactly on an E2M1 rounding bound
    (where ModelOpt's rule is not DeepSeek's): each such element moves to its BF16 neighbour away
    from zero (the bit pattern + 1), until none is left."""
    bounds = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], dtype=torch.float64)
    for _ in range(16):
        g = x.float().reshape(-1, 32)
        k = e8m0_exponent_ceil(g.abs().max(dim=-1, keepdim=True).values, 6.0)
        q = (g.double() / torch.exp2(k)).abs()
        tie = (q.unsqueeze(-1) == bounds).any(dim=-1) | (g == 0)
        if not bool(tie.any()):
            return x
        bits = x.view(torch.int16).reshape(-1, 32)
        x = torch.where(tie, bits + 1, bits).view(torch.bfloat16).reshape(x.shape)
    return x


def check_mxfp4_inputs(x: torch.Tensor):
    """No zero and no quotient x / s on one of E2M1's rounding bounds (where ModelOpt's rule is not
    DeepSeek's); no group scale under 2^-126."""
    g = x.float().reshape(-1, 32)
    amax = g.abs().max(dim=-1, keepdim=True).values
    k = e8m0_exponent_ceil(amax, 6.0)
    if bool((g == 0).any()) or bool((k < -126).any()):
        return False
    q = (g.double() / torch.exp2(k)).abs()
    bounds = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], dtype=torch.float64)
    return not bool((q.unsqueeze(-1) == bounds).any())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--modelopt", default=str(REPO_ROOT / ".ref-src" / "Model-Optimizer"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(20261205)

    tensors = {}
    summary = {"torch": torch.__version__}
    x = fp8_inputs(gen)
    tensors["fp8.input"] = x
    for kind, e8m0 in (("e8m0", True), ("f32", False)):
        q, s = fp8_block_quantize(x, e8m0)
        tensors[f"fp8.{kind}.weight"] = q.contiguous()
        tensors[f"fp8.{kind}.scale"] = s.contiguous()
        summary[f"fp8.{kind}"] = {"shape": list(x.shape), "scales": list(s.shape),
                                  "subnormal_codes": int(((q & 0x78) == 0).sum())}

    mxfp4_cls, mxfp4_path = load_mxfp4_qtensor(Path(args.modelopt))
    xm = break_mxfp4_ties(mxfp4_inputs(gen))
    if not check_mxfp4_inputs(xm):
        sys.exit("MXFP4 inputs hit a tie, a zero or a scale under 2^-126: choose another seed")
    qt, e8 = mxfp4_cls.quantize(xm.float(), 32)
    # ModelOpt takes log2 of amax / 6 in F32; on these inputs that must be the exact ceiling.
    exact = e8m0_exponent_ceil(xm.float().reshape(-1, 32).abs().max(dim=-1, keepdim=True).values, 6.0) + 127
    if not torch.equal(exact.to(torch.uint8).reshape(-1), e8.reshape(-1)):
        sys.exit("ModelOpt's F32 log2 gave another scale than the exact ceiling: choose another seed")
    tensors["mxfp4.input"] = xm
    tensors["mxfp4.weight"] = qt._quantized_data.reshape(64, 128).contiguous()
    tensors["mxfp4.scale"] = e8.reshape(64, 8).contiguous()
    commit_file = Path(args.modelopt) / "COMMIT"
    summary["modelopt"] = {
        "commit": commit_file.read_text().strip() if commit_file.exists() else None,
        "mxfp4_tensor.py blob": git_blob(mxfp4_path),
    }
    summary["mxfp4"] = {"shape": list(xm.shape), "scale_bytes": sorted(set(int(v) for v in e8.reshape(-1)))[:4]}

    save_file(tensors, str(out / "quantizer_oracle.safetensors"))
    (out / "quantizer_oracle.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
