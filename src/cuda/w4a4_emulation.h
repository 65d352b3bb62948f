#pragma once
// W4A4 NVFP4 linear layers emulated on GPUs without FP4 tensor cores (Hopper): what a Blackwell
// engine computes for y = x·Wᵀ with an NVFP4 weight and activations quantized at run time with the
// checkpoint's static input_scale.
//
// The engine (vLLM, ModelOpt NVFP4 checkpoint; modelopt.py, scaled_fp4_quant, the CUTLASS/FlashInfer
// block-scaled FP4 GEMM on tcgen05.mma.kind::mxf4nvf4):
//   gs    = 1 / input_scale                       (F32: input_global_scale_inv)
//   alpha = input_scale * weight_scale_2          (F32: layer.alpha)
//   xq    = e2m1(x) with E4M3 scales SF per 16    (scaled_fp4_quant(x, gs))
//   y     = alpha * sum_k (e2m1_x * SF_x)(e2m1_w * SF_w)   (F32 accumulation), then cast to BF16
// This emulation:
//   1. fake_quantize_activation(x, gs, multiplier 1): BF16 xq = e2m1_x * SF_x, the same quantizer
//      (Exact: the reference with IEEE reciprocals; Fast: vLLM's rcp.approx), and exact in BF16
//      (at most 6 significant bits, magnitudes 2^-10 .. 2688), so nothing is rounded here;
//   2. weight_gemm on xq with the weight's global scale replaced by alpha: it decodes e2m1_w * SF_w
//      exactly to BF16, multiplies on BF16 tensor cores (each product exact in F32), accumulates in
//      F32 and applies the global scale (= alpha) in F32.
// So every product matches the engine's exactly; what can differ is the summation: its order, the
// block-scaled MMA's internal accumulation precision (not documented as IEEE F32 per product), and
// where the scale is applied (weight_gemm's placement of the global scale vs. the engine's epilogue
// alpha * acc). The result is then within the usual F32 summation bound of the engine's: per output
// |Δ| <~ K·2^-24 · alpha · Σ_k |xq_k w_k|.
// Fused shards (q/k/v, gate/up) use the max of their input_scale as vLLM does; vLLM's FlashInfer MoE
// backends take one input scale for all experts (the max), its CUTLASS MoE path one per expert.
// Plain C++ header: no CUDA headers.
#include <cstddef>
#include <cstdint>

#include "cuda/activation_quantize.h"
#include "cuda/runtime.h"
#include "cuda/weight_gemm.h"

namespace fp4kit::cuda {

// Workspace w4a4_gemm needs for x [m, k]: the fake-quantized BF16 copy of x (2·m·k bytes).
size_t w4a4_workspace_bytes(int64_t m, int64_t k);

// y [m, w.n] = fake_quant(x) · Wᵀ scaled as above. w must be Nvfp4 (w.global_scale = weight_scale_2);
// input_scale is the checkpoint's (finite, > 0); workspace holds w4a4_workspace_bytes(m, w.k) bytes,
// 16-byte aligned. Stream-ordered like weight_gemm.
void w4a4_gemm(const uint16_t* x, int64_t m, const GemmWeight& w, float input_scale, void* y, GemmOutput out,
               void* workspace, size_t workspace_bytes, StreamHandle stream,
               ActivationQuantMath math = ActivationQuantMath::Exact);

}  // namespace fp4kit::cuda
