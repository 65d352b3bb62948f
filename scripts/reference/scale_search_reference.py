#!/usr/bin/env python3
"""Golden files for fp4kit's searched NVFP4 block scales (`--scales mse` and `--scales four-over-six`),
made with ModelOpt's own calibrators, kernels and exporter on a CUDA GPU.

For a few small weights (BF16 and F32, random and adversarial, one dequantized from FP8 blocks) it
runs, as ModelOpt's `mse_calibrate` runs them for one static NVFP4 weight quantizer:
- mse (NVFP4_W4A4_WEIGHT_MSE_FP8_SWEEP_CFG): `NVFP4MSECalibrator` (calib/mse.py) over the blocked
  weight, which takes the fused Triton sweep `nvfp4_fp8_scale_sweep` on the GPU; and once more with
  MODELOPT_NVFP4_TRITON_SWEEP=0, its reference 126-step sweep, for comparison;
- four-over-six (NVFP4_FOUR_OVER_SIX_CFG): `MseCalibrator` with multipliers 1.0 and 1.5 around the
  per-block amax, its quant_func the static fake quant `static_blockwise_fp4_fake_quant` with FP8
  scales normalised to 256;
then exports each searched per-block amax as `unified_export_hf._export_quantized_weight` does for
a static quantizer (`NVFP4QTensor.get_weights_scaling_factor_2_from_quantizer`,
`get_weights_scaling_factor_from_quantizer`, `NVFP4QTensor.quantize`), on the GPU and on the CPU.

Source of ModelOpt: a copy of its Python package in the git-ignored folder .ref-src/ at the
repository root, made from a clone of github.com/NVIDIA/Model-Optimizer (MODELOPT_GIT: its .git):

    mkdir -p .ref-src/Model-Optimizer && \\
    git --git-dir="$MODELOPT_GIT" archive a2fbac7bad8ab446d3f8783dadb0c3366eb0ad73 modelopt \\
        | tar -x -C .ref-src/Model-Optimizer && \\
    echo a2fbac7bad8ab446d3f8783dadb0c3366eb0ad73 > .ref-src/Model-Optimizer/COMMIT

Run (on a machine with torch, triton and a CUDA GPU; no network, nothing installed), from the
repository root:

    python3 scripts/reference/scale_search_reference.py --out tests/data/scale-search

It writes OUT/scale_search_goldens.safetensors (inputs, the calibrators' per-block amax, the exported
weight / weight_scale / weight_scale_2 per method and device) and OUT/scale_search_goldens.json (what
made them: versions, ModelOpt commit and the git blob of every ModelOpt file used, the stubs, probes
of the GPU arithmetic, per-case summaries). Exit 1 if a check fails.

How ModelOpt is imported: only the modules needed are loaded, from their files, with the package
__init__.py files not executed (they import pydantic-based configuration and every subsystem):
- packages modelopt, modelopt.torch, .utils, .quantization, .quantization.calib, .qtensor,
  .backends, modelopt.torch.kernels, .kernels.quantization, .gemm, .common: empty package modules
  whose __path__ is the real folder, so that their submodules are the real files;
- modelopt.torch.quantization.utils: a package module holding the functions
  convert_quantization_axis_to_reduce_axis, reduce_amax, reduce_sum, reduce_block_amax and
  reduce_block_padding, compiled from the real utils/core_utils.py (the rest of that file needs
  FSDP, pydantic and accelerate); fsdp2_aware_weight_update and patch_fsdp_mp_dtypes, which
  qtensor/base_qtensor.py imports but nothing here calls, are placeholders that raise;
- modelopt.torch.quantization.tensor_quant: a module holding _fp8_eager, fp8_eager and
  scaled_e4m3_impl compiled from the real tensor_quant.py (the rest registers autograd functions
  and torch.library operators), with the real extensions.py's get_cuda_ext_fp8 (ModelOpt builds
  its FP8 CUDA extension with the local toolkit when it can, else falls back to fp8_eager; the JSON
  says which ran);
- modelopt.torch.utils.load_cpp_extension: the real utils/cpp_extension.py.
The calibrators' quant_func is what model_calib._mse_quant_func runs through the quantizer's
forward for a promoted static NVFP4 quantizer: static_blockwise_fp4_fake_quant(x, amax,
global_amax, True, fp8_max_for_normalization, x.dtype) on the [n_blocks, 16] view.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import importlib.util
import json
import os
import platform
import random
import struct
import sys
import time
import types
from pathlib import Path

import torch
import triton
import triton.language as tl

MODELOPT_COMMIT = "a2fbac7bad8ab446d3f8783dadb0c3366eb0ad73"
# git blob (first 8 hex digits) of every ModelOpt file used, at MODELOPT_COMMIT.
EXPECTED_BLOBS = {
    "modelopt/torch/quantization/calib/mse.py": "7d6583aa",
    "modelopt/torch/quantization/calib/calibrator.py": "633f0070",
    "modelopt/torch/kernels/quantization/gemm/_fp8_scale_candidates.py": "9c48c180",
    "modelopt/torch/kernels/quantization/gemm/nvfp4_fp8_sweep.py": "a56588b2",
    "modelopt/torch/kernels/quantization/gemm/fp4_kernel.py": "c9499b61",
    "modelopt/torch/kernels/quantization/common/nvfp4_quant.py": "d74a346d",
    "modelopt/torch/kernels/quantization/gemm/tensor_quant_gpu_fp8.cu": "9db141f0",
    "modelopt/torch/quantization/qtensor/nvfp4_tensor.py": "0d18530b",
    "modelopt/torch/quantization/tensor_quant.py": "20e08349",
    "modelopt/torch/quantization/utils/numeric_utils.py": "affc54fb",
    "modelopt/torch/quantization/utils/core_utils.py": "3d1e017b",
}
BLOCK = 16
REPO_ROOT = Path(__file__).resolve().parents[2]

DTYPE_NAMES = {
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.uint8: "U8",
    torch.float8_e4m3fn: "F8_E4M3",
}


# ---- loading ModelOpt's modules -------------------------------------------------------------------


def git_blob(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def stub_package(name: str, path: Path) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    module.__package__ = name
    module.__file__ = None
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def load_module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    spec.loader.exec_module(module)
    return module


def compile_definitions(path: Path, names: list[str], namespace: dict) -> None:
    """Executes, in `namespace`, the top-level definitions `names` of the Python file `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    picked, found = [], set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            picked.append(node)
            found.add(node.name)
        elif isinstance(node, ast.Assign):
            targets = {t.id for t in node.targets if isinstance(t, ast.Name)}
            if targets & set(names):
                picked.append(node)
                found |= targets & set(names)
    missing = sorted(set(names) - found)
    if missing:
        raise RuntimeError(f"{path}: definitions not found: {missing}")
    exec(compile(ast.Module(body=picked, type_ignores=[]), str(path), "exec"), namespace)


def not_used(name: str):
    def fail(*args, **kwargs):
        raise RuntimeError(f"{name} is a placeholder in this script and must not be called")

    return fail


class ModelOpt:
    """The ModelOpt functions this script calls, loaded from `root` (the folder holding modelopt/)."""

    def __init__(self, root: Path, fp8_extension: bool):
        self.root = root
        self.stubs: list[str] = []
        mo = root / "modelopt"
        if not (mo / "torch" / "quantization" / "calib" / "mse.py").is_file():
            raise SystemExit(
                f"{mo}: no ModelOpt sources; populate .ref-src/ as the docstring of this script says"
            )
        q = mo / "torch" / "quantization"
        k = mo / "torch" / "kernels" / "quantization"
        for name, path in [
            ("modelopt", mo),
            ("modelopt.torch", mo / "torch"),
            ("modelopt.torch.utils", mo / "torch" / "utils"),
            ("modelopt.torch.quantization", q),
            ("modelopt.torch.kernels", mo / "torch" / "kernels"),
            ("modelopt.torch.kernels.quantization", k),
            ("modelopt.torch.kernels.quantization.gemm", k / "gemm"),
            ("modelopt.torch.kernels.quantization.common", k / "common"),
            ("modelopt.torch.quantization.calib", q / "calib"),
            ("modelopt.torch.quantization.backends", q / "backends"),
            ("modelopt.torch.quantization.qtensor", q / "qtensor"),
        ]:
            stub_package(name, path)
            self.stubs.append(f"{name}: package __init__.py not executed; its submodules are the real files")

        utils = stub_package("modelopt.torch.quantization.utils", q / "utils")
        utils.__dict__.update({"torch": torch, "F": torch.nn.functional})
        core_names = [
            "_FP8_DTYPES",
            "reduce_block_amax",
            "reduce_block_padding",
            "convert_quantization_axis_to_reduce_axis",
            "reduce_amax",
            "reduce_sum",
        ]
        compile_definitions(q / "utils" / "core_utils.py", core_names, utils.__dict__)
        utils.fsdp2_aware_weight_update = not_used("fsdp2_aware_weight_update")
        utils.patch_fsdp_mp_dtypes = not_used("patch_fsdp_mp_dtypes")
        self.stubs.append(
            "modelopt.torch.quantization.utils: holds " + ", ".join(core_names[1:])
            + " compiled from the real utils/core_utils.py; fsdp2_aware_weight_update and "
            "patch_fsdp_mp_dtypes (imported by qtensor/base_qtensor.py, never called here) are placeholders"
        )
        self.numeric_utils = load_module("modelopt.torch.quantization.utils.numeric_utils", q / "utils" / "numeric_utils.py")

        gemm = sys.modules["modelopt.torch.kernels.quantization.gemm"]
        load_module("modelopt.torch.kernels.quantization.common.nvfp4_quant", k / "common" / "nvfp4_quant.py")
        self.candidates = load_module(
            "modelopt.torch.kernels.quantization.gemm._fp8_scale_candidates", k / "gemm" / "_fp8_scale_candidates.py"
        )
        self.fp4_kernel = load_module("modelopt.torch.kernels.quantization.gemm.fp4_kernel", k / "gemm" / "fp4_kernel.py")
        self.sweep = load_module("modelopt.torch.kernels.quantization.gemm.nvfp4_fp8_sweep", k / "gemm" / "nvfp4_fp8_sweep.py")
        # What the real gemm/__init__.py exports (it star-imports these modules when triton is there).
        for module in (self.fp4_kernel, self.sweep):
            for name in module.__all__:
                setattr(gemm, name, getattr(module, name))
        gemm.IS_AVAILABLE = True
        self.stubs.append(
            "modelopt.torch.kernels.quantization.gemm: the names its __init__.py star-imports from "
            "fp4_kernel.py and nvfp4_fp8_sweep.py are set on the package, IS_AVAILABLE = True"
        )

        # tensor_quant: the FP8 fake quant compute_fp4_scales imports, with ModelOpt's extension loader.
        self.extension_note = "not tried (--no-fp8-extension): fp8_eager"
        get_cuda_ext_fp8 = lambda raise_if_failed=False: None  # noqa: E731
        if fp8_extension:
            try:
                cpp = load_module("modelopt.torch.utils.cpp_extension", mo / "torch" / "utils" / "cpp_extension.py")
                sys.modules["modelopt.torch.utils"].load_cpp_extension = cpp.load_cpp_extension
                extensions = load_module("modelopt.torch.quantization.extensions", q / "extensions.py")
                get_cuda_ext_fp8 = extensions.get_cuda_ext_fp8
                self.extension_note = "ModelOpt's loader"
            except ImportError as e:
                self.extension_note = f"loader not importable ({e}): fp8_eager"
        tq = types.ModuleType("modelopt.torch.quantization.tensor_quant")
        tq.__dict__.update({"torch": torch, "get_cuda_ext_fp8": get_cuda_ext_fp8})
        compile_definitions(q / "tensor_quant.py", ["_fp8_eager", "fp8_eager", "scaled_e4m3_impl"], tq.__dict__)
        sys.modules[tq.__name__] = tq
        sys.modules["modelopt.torch.quantization"].tensor_quant = tq
        self.tensor_quant = tq
        self.stubs.append(
            "modelopt.torch.quantization.tensor_quant: holds _fp8_eager, fp8_eager and scaled_e4m3_impl "
            "compiled from the real tensor_quant.py, with get_cuda_ext_fp8 from the real extensions.py"
        )

        load_module("modelopt.torch.quantization.calib.calibrator", q / "calib" / "calibrator.py")
        self.mse = load_module("modelopt.torch.quantization.calib.mse", q / "calib" / "mse.py")
        load_module("modelopt.torch.quantization.backends.utils", q / "backends" / "utils.py")
        load_module("modelopt.torch.quantization.qtensor.base_qtensor", q / "qtensor" / "base_qtensor.py")
        self.nvfp4 = load_module("modelopt.torch.quantization.qtensor.nvfp4_tensor", q / "qtensor" / "nvfp4_tensor.py")
        self.utils = utils

    def fp8_extension_loaded(self) -> bool:
        fn = self.tensor_quant.get_cuda_ext_fp8
        return getattr(fn, "extension", None) is not None

    def blobs(self) -> dict:
        out = {}
        for rel, expected in EXPECTED_BLOBS.items():
            blob = git_blob(self.root / rel)
            out[rel] = {"git_blob": blob, "expected_prefix": expected, "matches": blob.startswith(expected)}
        return out

    # -- what model_calib runs for one static NVFP4 weight quantizer --------------------------------

    def fake_quant(self, x, amax, *, global_amax, fp8_max):
        """StaticBlockScaleQuantizer._fake_quantize for x in the [n_blocks, 16] layout."""
        return self.fp4_kernel.static_blockwise_fp4_fake_quant(x, amax, global_amax, True, fp8_max, x.dtype)

    def mse_sweep(self, blocks, initial_amax, global_amax, triton: bool):
        old = os.environ.get("MODELOPT_NVFP4_TRITON_SWEEP")
        os.environ["MODELOPT_NVFP4_TRITON_SWEEP"] = "1" if triton else "0"
        try:
            cal = self.mse.NVFP4MSECalibrator(
                amax=initial_amax.clone(),
                global_amax=global_amax,
                axis=(0,),
                quant_func=functools.partial(self.fake_quant, global_amax=global_amax, fp8_max=448.0),
            )
            took_triton = cal._can_use_triton_fast_path(blocks)
            if took_triton != triton:
                raise RuntimeError(f"NVFP4MSECalibrator fast path {took_triton}, wanted {triton}")
            cal.collect(blocks)
            return cal.compute_amax()
        finally:
            if old is None:
                del os.environ["MODELOPT_NVFP4_TRITON_SWEEP"]
            else:
                os.environ["MODELOPT_NVFP4_TRITON_SWEEP"] = old

    def four_over_six(self, blocks, initial_amax, global_amax, eager: bool = False):
        saved = self.tensor_quant.get_cuda_ext_fp8
        if eager:
            self.tensor_quant.get_cuda_ext_fp8 = lambda raise_if_failed=False: None
        try:
            # NVFP4_FOUR_OVER_SIX_CFG: method mse, fp8_scale_sweep false, multipliers 1.0..1.5 step 0.5.
            cal = self.mse.MseCalibrator(
                amax=initial_amax.clone(),
                axis=(0,),
                step_size=0.5,
                start_multiplier=1.0,
                stop_multiplier=1.5,
                quant_func=functools.partial(self.fake_quant, global_amax=global_amax, fp8_max=256.0),
            )
            cal.collect(blocks)
            return cal.compute_amax()
        finally:
            self.tensor_quant.get_cuda_ext_fp8 = saved

    def export(self, weight, block_amax, global_amax, four_over_six: bool, device: str):
        """_export_quantized_weight for a static NVFP4 quantizer with per-block amax `block_amax`."""
        block_sizes = {-1: BLOCK, "type": "static", "scale_bits": (4, 3)}
        if four_over_six:
            block_sizes["four_over_six"] = True
        quantizer = types.SimpleNamespace(
            block_sizes=block_sizes, global_amax=global_amax.to(device), _amax=block_amax.to(device)
        )
        w = weight.to(device)
        q = self.nvfp4.NVFP4QTensor
        wsf2 = q.get_weights_scaling_factor_2_from_quantizer(quantizer)
        ws = q.get_weights_scaling_factor_from_quantizer(quantizer, w, wsf2)[0]
        packed = q.quantize(w, BLOCK, ws, wsf2)[0]._quantized_data
        return packed.cpu(), ws.cpu(), wsf2.reshape(()).cpu()


# ---- inputs ---------------------------------------------------------------------------------------


def e4m3_values() -> list[float]:
    return torch.arange(128, dtype=torch.uint8).view(torch.float8_e4m3fn).float().tolist()


def adversarial(rows: int, cols: int, g: float, seed: int) -> torch.Tensor:
    """Blocks that put values on the candidates' grids, on E2M1 decision boundaries, at the E4M3 ends,
    or make candidates tie. Element [0, 0] is g, so the tensor's amax is g."""
    rng = random.Random(seed)
    fp8 = e4m3_values()
    grid = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    bounds = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    unit = g / 2688.0
    out = []
    kinds = []
    for _ in range(rows * cols // BLOCK):
        kind = rng.randrange(14)
        kinds.append(kind)
        x = [0.0] * BLOCK
        if kind == 0:
            pass  # zeros
        elif kind == 1:
            x[rng.randrange(BLOCK)] = g
        elif kind == 2:
            x[rng.randrange(BLOCK)] = 6.0 * fp8[rng.randint(1, 126)] * unit
        elif kind == 3:
            v = fp8[rng.randint(1, 126)] * unit * rng.choice(grid[1:])
            x = [v] * BLOCK
        elif kind == 4:
            s = fp8[rng.randint(1, 126)] * unit
            x = [rng.choice(grid) * s * rng.choice((-1.0, 1.0)) for _ in range(BLOCK)]
        elif kind == 5:
            s = abs(rng.gauss(0.0, 1.0)) * g / 6.0 + 1e-30
            x = [rng.choice(bounds) * s * (1.0 + rng.choice((-1, 0, 1)) * 2.0**-23) for _ in range(BLOCK)]
            x[0] = 6.0 * s
        elif kind == 6:
            scale = g * 2.0 ** -(8 + rng.randrange(10))
            x = [rng.gauss(0.0, 1.0) * scale for _ in range(BLOCK)]
        elif kind == 7:
            x = [rng.choice((-g, g)) for _ in range(BLOCK)]
        elif kind == 8:
            a = g * rng.uniform(0.05, 0.9)
            x = [a if i % 2 else a / 2 for i in range(BLOCK)]
        elif kind == 9:
            x = [-0.0 if rng.randrange(3) == 0 else -abs(rng.gauss(0.0, 1.0)) * g * 0.3 for _ in range(BLOCK)]
        elif kind == 10:
            s = g / 448.0
            x = [fp8[rng.randint(1, 126)] * s * rng.choice((-1.0, 1.0)) for _ in range(BLOCK)]
        elif kind == 11:
            big = abs(rng.gauss(0.0, 1.0)) * g * 0.5 + g * 0.01
            r = rng.choice(grid[1:]) / 6.0
            x = [big * r] * BLOCK
            x[rng.randrange(BLOCK)] = big
        else:
            x = [rng.gauss(0.0, 1.0) * g * 0.3 for _ in range(BLOCK)]
            x[rng.randrange(BLOCK)] = g * 0.999 * rng.choice((-1.0, 1.0))
        out.extend(max(-g, min(g, v)) for v in x)
    t = torch.tensor(out, dtype=torch.float32).reshape(rows, cols)
    t[0, 0] = g
    return t


def fp8_block_source(rows: int, cols: int, gen: torch.Generator):
    """An FP8 E4M3 weight with F32 128x128 block scales (DeepSeek V3's layout) and its F32 dequant
    (weight.float() * scale_inv per block, DeepSeek's formula)."""
    codes = torch.randint(0, 256, (rows, cols), generator=gen, dtype=torch.int32).to(torch.uint8)
    codes[(codes & 0x7F) == 0x7F] = 0x7E  # no NaN
    w8 = codes.view(torch.float8_e4m3fn)
    scale_inv = (torch.rand((rows + 127) // 128, (cols + 127) // 128, generator=gen) * 4e-4 + 1e-5).float()
    expanded = scale_inv.repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
    return w8, scale_inv, w8.float() * expanded


def make_cases(gen: torch.Generator) -> list[dict]:
    cases = []

    def add(name, values, note, global_amax=None, extra=None):
        cases.append({"name": name, "values": values, "note": note, "global_amax": global_amax, "extra": extra or {}})

    add("bf16_normal", (torch.randn(64, 256, generator=gen) * 0.02).to(torch.bfloat16), "N(0, 0.02) BF16")
    z = torch.randn(64, 256, generator=gen)
    chi2 = (torch.randn(3, 64, 256, generator=gen) ** 2).sum(0) / 3.0
    add("bf16_student_t", (z / chi2.sqrt() * 0.01).to(torch.bfloat16), "Student t (3 dof) * 0.01, BF16")
    adv = adversarial(128, 256, 1.0, seed=20617)
    add("bf16_adversarial", adv.to(torch.bfloat16), "adversarial blocks (kinds 0-13, see adversarial()), g = 1, BF16")
    add("f32_adversarial", adversarial(128, 256, 0.0371, seed=2512), "adversarial blocks, g = 0.0371, F32")
    w8, scale_inv, deq = fp8_block_source(64, 256, gen)
    # fp4kit's convert for FP8 blocks with F32 scales (ModelOpt's DeepSeek V3 rule): the F32 dequant is
    # quantized, with the amax of the BF16 dequant (the F32 amax rounded to BF16).
    g_fp8 = deq.abs().max().to(torch.bfloat16).float()
    add("f32_from_fp8", deq, "FP8 E4M3 with F32 128x128 scales, F32 dequant; global amax rounded to BF16",
        global_amax=g_fp8, extra={"fp8_weight": w8, "fp8_scale_inv": scale_inv})
    member = (torch.randn(64, 256, generator=gen) * 0.02).to(torch.bfloat16)
    add("bf16_group_member", member, "N(0, 0.02) BF16 in a fused group whose amax is 4x its own",
        global_amax=member.float().abs().max() * 4.0)
    add("bf16_tiny", (torch.randn(64, 256, generator=gen) * 2.0**-112).to(torch.bfloat16),
        "N(0, 2^-112) BF16: candidate scales near the bottom of the F32 range")
    add("bf16_large", (torch.randn(32, 256, generator=gen) * 3.0e4).to(torch.bfloat16), "N(0, 3e4) BF16")
    nan = (torch.randn(16, 64, generator=gen) * 0.02)
    nan[3, 17] = float("nan")
    add("bf16_nan", nan.to(torch.bfloat16), "one NaN: global amax NaN")
    return cases


# ---- probes of the GPU arithmetic -----------------------------------------------------------------


@triton.jit
def _probe_div_kernel(a_ptr, b_ptr, out_ptr, n, BLOCK_N: tl.constexpr):
    offs = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    m = offs < n
    a = tl.load(a_ptr + offs, mask=m, other=1.0)
    b = tl.load(b_ptr + offs, mask=m, other=1.0)
    tl.store(out_ptr + offs, a / b, mask=m)


@triton.jit
def _probe_div6_kernel(a_ptr, out_ptr, n, BLOCK_N: tl.constexpr):
    offs = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    m = offs < n
    a = tl.load(a_ptr + offs, mask=m, other=1.0)
    tl.store(out_ptr + offs, a / 6.0, mask=m)


@triton.jit
def _probe_sub_mul_kernel(a_ptr, b_ptr, c_ptr, out_ptr, n, BLOCK_N: tl.constexpr):
    offs = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    m = offs < n
    a = tl.load(a_ptr + offs, mask=m, other=0.0)
    b = tl.load(b_ptr + offs, mask=m, other=0.0)
    c = tl.load(c_ptr + offs, mask=m, other=0.0)
    tl.store(out_ptr + offs, a - b * c, mask=m)


def probes(device) -> dict:
    """How Triton's f32 a / b, a / 6.0 and a - b * c round, against the models fp4kit uses."""
    gen = torch.Generator().manual_seed(6)
    n = 1 << 20
    a = (torch.rand(n, generator=gen) * 8.0).to(device)
    b = torch.exp2(torch.rand(n, generator=gen) * 40.0 - 20.0).to(device)
    grid = (triton.cdiv(n, 1024),)
    quotient = torch.empty_like(a)
    _probe_div_kernel[grid](a, b, quotient, n, BLOCK_N=1024)
    by_six = torch.empty_like(a)
    _probe_div6_kernel[grid](a, by_six, n, BLOCK_N=1024)
    c = (torch.rand(n, generator=gen) * 12.0).floor().to(device) / 2.0
    s = torch.exp2(torch.rand(n, generator=gen) * 10.0 - 5.0).to(device)
    sub_mul = torch.empty_like(a)
    _probe_sub_mul_kernel[grid](a, c, s, sub_mul, n, BLOCK_N=1024)
    fused = (a.double() - c.double() * s.double()).float()  # exact in double, then one rounding
    r6 = torch.full_like(a, 1.0 / 6.0)  # fl(1/6)
    one = torch.ones(1, device=device)
    one_by_six = torch.empty_like(one)
    _probe_div6_kernel[(1,)](one, one_by_six, 1, BLOCK_N=1024)
    return {
        "samples": n,
        "div_vs_ieee_mismatches": int((quotient != a / b).sum()),
        "div_vs_times_rounded_reciprocal_mismatches": int((quotient != a * torch.reciprocal(b)).sum()),
        "one_by_6_bits": f"{int(one_by_six.view(torch.int32).item()) & 0xFFFFFFFF:08x}",
        "div6_vs_times_rounded_one_sixth_mismatches": int((by_six != a * r6).sum()),
        "div6_vs_ieee_mismatches": int((by_six != torch.div(a, torch.full_like(a, 6.0))).sum()),
        "sub_mul_vs_fused_mismatches": int((sub_mul != fused).sum()),
        "sub_mul_vs_unfused_mismatches": int((sub_mul != a - c * s).sum()),
    }


# ---- safetensors ----------------------------------------------------------------------------------


def write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


# ---- main -----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/data/scale-search", help="output folder")
    ap.add_argument("--modelopt", default=str(REPO_ROOT / ".ref-src" / "Model-Optimizer"),
                    help="folder holding ModelOpt's modelopt/ package")
    ap.add_argument("--no-fp8-extension", action="store_true",
                    help="do not let ModelOpt build its FP8 CUDA extension (fp8_eager is used)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("scale_search_reference: needs a CUDA GPU (ModelOpt's sweep is a Triton kernel)", file=sys.stderr)
        return 2
    start = time.time()
    device = torch.device("cuda")
    root = Path(args.modelopt)
    mo = ModelOpt(root, fp8_extension=not args.no_fp8_extension)
    commit_file = root / "COMMIT"
    commit = commit_file.read_text().strip() if commit_file.is_file() else None

    tensors: dict[str, torch.Tensor] = {}
    summary = []
    failures = []
    gen = torch.Generator().manual_seed(17)
    for case in make_cases(gen):
        name = case["name"]
        values = case["values"]
        rows, cols = values.shape
        x = values.to(device)
        per_block = mo.utils.reduce_block_amax(x, block_sizes={-1: BLOCK}).float()  # [rows, cols/16]
        initial = per_block.reshape(-1, 1)  # the max calibrator's _amax for the [n_blocks, 16] layout
        if case["global_amax"] is None:
            g = mo.utils.reduce_amax(initial, axis=None).float()  # promote_static_block_weight_quantizers
        else:
            g = case["global_amax"].reshape(()).float().to(device)
        blocks = x.reshape(-1, BLOCK)

        searched = {
            "mse": mo.mse_sweep(blocks, initial, g, triton=True),
            "mse_reference": mo.mse_sweep(blocks, initial, g, triton=False),
            "four_over_six": mo.four_over_six(blocks, initial, g),
        }
        if mo.fp8_extension_loaded():
            searched["four_over_six_eager"] = mo.four_over_six(blocks, initial, g, eager=True)
        tensors[f"{name}.input"] = values
        tensors[f"{name}.global_amax"] = g.reshape(()).cpu()
        for key, t in case["extra"].items():
            tensors[f"{name}.{key}"] = t
        for method, amax in searched.items():
            tensors[f"{name}.{method}.block_amax"] = amax.reshape(rows, cols // BLOCK).cpu()
        for method in ("mse", "four_over_six"):
            for dev in ("cuda", "cpu"):
                packed, scale, scale_2 = mo.export(values, searched[method], g, method == "four_over_six", dev)
                tensors[f"{name}.{method}.{dev}.weight"] = packed
                tensors[f"{name}.{method}.{dev}.weight_scale"] = scale
                tensors[f"{name}.{method}.{dev}.weight_scale_2"] = scale_2

        def differing(a, b):
            a, b = a.reshape(-1).cpu(), b.reshape(-1).cpu()
            return int((~((a == b) | (a.isnan() & b.isnan()))).sum())

        # The calibrator's block amax must be one of its candidates (126 E4M3 values / 448 of g).
        mse_codes = None
        if torch.isfinite(g):
            c = mo.candidates.fp8_scale_candidates(device).float()
            match = (searched["mse"].reshape(-1, 1) == (g * c).reshape(1, -1))
            if not bool(match.any(dim=1).all()):
                failures.append(f"{name}: an mse block amax is not a candidate")
            mse_codes = (match.float().argmax(dim=1) + 1).cpu()
            max_codes = ((per_block.reshape(-1) / (g / 448.0)).to(torch.float8_e4m3fn).view(torch.uint8) & 0x7F).cpu()
        picks_four = (searched["four_over_six"].reshape(-1) != initial.reshape(-1)).sum().item()
        entry = {
            "case": name,
            "note": case["note"],
            "dtype": DTYPE_NAMES[values.dtype],
            "shape": [rows, cols],
            "blocks": rows * cols // BLOCK,
            "global_amax": float(g),
            "mse_triton_vs_reference_blocks_differing": differing(searched["mse"], searched["mse_reference"]),
            "four_over_six_blocks_at_1.5": int(picks_four),
            "mse_cuda_vs_cpu_scale_bytes_differing": differing(
                tensors[f"{name}.mse.cuda.weight_scale"].view(torch.uint8), tensors[f"{name}.mse.cpu.weight_scale"].view(torch.uint8)
            ),
        }
        if "four_over_six_eager" in searched:
            entry["four_over_six_extension_vs_eager_blocks_differing"] = differing(
                searched["four_over_six"], searched["four_over_six_eager"]
            )
        if mse_codes is not None:
            offsets = (mse_codes.int() - max_codes.int())
            entry["mse_code_minus_max_code"] = {str(int(k)): int((offsets == k).sum()) for k in offsets.unique()}
        summary.append(entry)
        print(json.dumps(entry), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    blobs = mo.blobs()
    for rel, b in blobs.items():
        if not b["matches"]:
            failures.append(f"{rel}: git blob {b['git_blob'][:8]}, expected {b['expected_prefix']}")
    report = {
        "producer": "scripts/reference/scale_search_reference.py",
        "modelopt": {"repository": "NVIDIA/Model-Optimizer", "commit": commit, "expected_commit": MODELOPT_COMMIT,
                     "files": blobs},
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "triton": triton.__version__,
            "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name(0),
            "capability": list(torch.cuda.get_device_capability(0)),
        },
        "fp8_extension": {"how": mo.extension_note, "loaded": mo.fp8_extension_loaded()},
        "stubs": mo.stubs,
        "probes": probes(device),
        "cases": summary,
        "tensor_names": "<case>.input, .global_amax, .<method>.block_amax (method: mse, mse_reference, "
        "four_over_six, four_over_six_eager when the FP8 extension ran), .<mse|four_over_six>.<cuda|cpu>."
        "<weight|weight_scale|weight_scale_2>; f32_from_fp8 also .fp8_weight and .fp8_scale_inv",
        "failures": failures,
        "seconds": round(time.time() - start, 1),
    }
    metadata = {
        "producer": "fp4kit scripts/reference/scale_search_reference.py",
        "modelopt_commit": commit or "unknown",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "device": torch.cuda.get_device_name(0),
        "fp8_extension_loaded": str(mo.fp8_extension_loaded()),
    }
    write_safetensors(out / "scale_search_goldens.safetensors", tensors, metadata)
    (out / "scale_search_goldens.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({"probes": report["probes"], "fp8_extension": report["fp8_extension"], "failures": failures}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
