// Stages 2 and 3 of the routed experts for batches whose experts have many rows each: every
// expert's weights decoded once to BF16 and its rows multiplied by cuBLASLt. The products are those
// of the grouped kernels (the same BF16 values, F32 sums in another order, the same clamped SwiGLU
// on the F32 sums rounded once to BF16).
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "cuda/check.cuh"
#include "cuda/codecs.cuh"
#include "cuda/cublas_gemm.h"
#include "cuda/moe_experts.h"
#include "cuda/gemm_weight_bf16.h"
#include "cuda/weight_gemm_args.cuh"

namespace fp4kit::cuda {
namespace {

__global__ void swiglu_to_bf16_kernel(const float* g, const float* u, int64_t n, float limit, uint16_t* h) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) h[i] = float_to_bf16_bits(clamped_swiglu(g[i], u[i], limit));
}

}  // namespace

bool moe_expert_products_decoded(const std::vector<GemmWeight>& w1, const std::vector<GemmWeight>& w3,
                                 const std::vector<GemmWeight>& w2, const std::vector<int32_t>& offsets,
                                 float swiglu_limit, MoeWorkspace& ws, CublasGemm& gemm, StreamHandle stream) {
  const int64_t E = ws.experts(), H = ws.hidden(), I = ws.inter(), R = ws.routed_tokens() * ws.top_k();
  if (static_cast<int64_t>(w1.size()) != E || w3.size() != w1.size() || w2.size() != w1.size() ||
      static_cast<int64_t>(offsets.size()) != E + 1)
    throw InputError("decoded expert products: " + std::to_string(w1.size()) + " experts and " +
                     std::to_string(offsets.size()) + " offsets for a workspace of " + std::to_string(E) + " experts");
  for (int64_t e = 0; e < E; ++e)
    if (!decodes_to_bf16_exactly(w1[e]) || !decodes_to_bf16_exactly(w3[e]) || !decodes_to_bf16_exactly(w2[e])) return false;
  if (R == 0) return true;
  // Rows of expert e: [offsets[e], offsets[e + 1]); rows after offsets[E] (ids outside the experts,
  // reported by throw_if_bad_routing) go with the last expert, as in the grouped kernels.
  auto end_of = [&](int64_t e) { return e + 1 == E ? R : static_cast<int64_t>(offsets[e + 1]); };
  int64_t most = 0;
  for (int64_t e = 0; e < E; ++e) most = std::max(most, end_of(e) - offsets[e]);
  const size_t wbytes = static_cast<size_t>(std::max(I * H, H * I)) * 2;
  DeviceBuffer a(wbytes, "decoded expert w1"), b(wbytes, "decoded expert w3"), c(wbytes, "decoded expert w2");
  DeviceBuffer g(static_cast<size_t>(most * I) * 4, "expert gate sums"), u(static_cast<size_t>(most * I) * 4, "expert up sums");
  uint16_t* h = ws.hidden_act_.data<uint16_t>();
  float* y = ws.expert_out_.data<float>();
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = offsets[e], n = end_of(e) - r0;
    if (n <= 0) continue;
    const uint16_t* x = ws.sorted_x() + r0 * H;
    // One stream: each decode waits for the products that read the scratch before it.
    gemm.bf16_gemm(x, gemm_weight_bf16(w1[e], a.data<uint16_t>(), stream), g.data(), GemmOutput::F32, n, I, H, stream,
                   gemm_weight_bf16_alpha(w1[e]));
    gemm.bf16_gemm(x, gemm_weight_bf16(w3[e], b.data<uint16_t>(), stream), u.data(), GemmOutput::F32, n, I, H, stream,
                   gemm_weight_bf16_alpha(w3[e]));
    swiglu_to_bf16_kernel<<<ceil_div(static_cast<size_t>(n * I), 256), 256, 0, stream>>>(
        g.data<float>(), u.data<float>(), n * I, swiglu_limit, h + r0 * I);
    check_launch("expert SwiGLU", [&] { return "rows=" + std::to_string(n) + " I=" + std::to_string(I); });
    gemm.bf16_gemm(h + r0 * I, gemm_weight_bf16(w2[e], c.data<uint16_t>(), stream), y + r0 * H, GemmOutput::F32, n, H, I,
                   stream, gemm_weight_bf16_alpha(w2[e]));
  }
  check(cudaStreamSynchronize(stream), "decoded expert products");  // the scratch dies here
  return true;
}

}  // namespace fp4kit::cuda
