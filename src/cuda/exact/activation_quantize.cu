// NVFP4 activation quantization (vLLM scaled_fp4_quant's recipe), its decode, and the fused
// quantize-decode. One thread per block of 16 BF16 values: two 16-byte loads, one 8-byte store of
// packed codes, one scale byte. The recipe and its sources: formats/nvfp4_activation.h.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "base/error.h"
#include "cuda/activation_quantize.h"
#include "cuda/check.cuh"
#include "cuda/codecs.cuh"
#include "cuda/exact/encoders.cuh"
#include "formats/nvfp4_scale_layout.h"

namespace fp4kit::cuda {
namespace {

constexpr int kActivationThreads = 256;
constexpr unsigned kMaxBlocks = 1u << 20;  // the loops stride over the rest
constexpr float kInvSix = 1.0f / 6.0f;     // fl(1/6) = 0x3E2AAAAB

__device__ __forceinline__ float rcp_approx_ftz(float a) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(a));
  return r;
}

// cvt.rn.satfinite.e2m1x2.f32 for one value, as CUDA's __nv_cvt_double_to_fp4 defines it: round
// half to even, saturate to 6, the input's sign bit (so -0.0 -> 0x8), NaN -> +6 (0x7).
__device__ __forceinline__ uint32_t e2m1_satfinite(float y) {
  if (y != y) return 0x7u;
  return e2m1_magnitude_code(fabsf(y)) | ((__float_as_uint(y) >> 28) & 0x8u);
}

// Two codes in one byte, `even` in the low nibble. The fast path uses the instruction itself where
// the architecture has it (Blackwell), so that it computes what the engine computes there.
template <bool kFast>
__device__ __forceinline__ uint32_t e2m1x2(float even, float odd) {
#if defined(__CUDA_ARCH_FEAT_SM100_ALL) || defined(__CUDA_ARCH_FEAT_SM101_ALL) || \
    defined(__CUDA_ARCH_FEAT_SM103_ALL) || defined(__CUDA_ARCH_FEAT_SM120_ALL) || defined(__CUDA_ARCH_FEAT_SM121_ALL)
  if constexpr (kFast) {
    uint16_t r;
    asm("{ .reg .b8 t;\n cvt.rn.satfinite.e2m1x2.f32 t, %2, %1;\n mov.b16 %0, {t, 0};\n}"
        : "=h"(r)
        : "f"(even), "f"(odd));
    return r;
  }
#endif
  return e2m1_satfinite(even) | (e2m1_satfinite(odd) << 4);
}

struct QuantizedBlock {
  uint2 packed;  // 16 codes, element i at bits 4*(i%8) of word i/8
  uint32_t scale;
};

// 16 BF16 values in two 16-byte words (element 2j in the low half of 32-bit word j).
template <bool kFast>
__device__ __forceinline__ QuantizedBlock quantize_block(const uint4 (&v)[2], float gs, float inv_gs) {
  const uint32_t w[8] = {v[0].x, v[0].y, v[0].z, v[0].w, v[1].x, v[1].y, v[1].z, v[1].w};
  // amax exactly as the engine takes it: max.bf16x2 returns the non-NaN operand.
  __nv_bfloat162 m2 = __habs2(*reinterpret_cast<const __nv_bfloat162*>(&w[0]));
#pragma unroll
  for (int j = 1; j < 8; ++j) m2 = __hmax2(m2, __habs2(*reinterpret_cast<const __nv_bfloat162*>(&w[j])));
  const float amax = __bfloat162float(__hmax(m2.x, m2.y));

  uint32_t sf;
  float out_scale;
  if constexpr (kFast) {  // vLLM cvt_warp_fp16_to_fp4, term for term
    const float sf_value = gs * (amax * rcp_approx_ftz(6.0f));
    sf = __nv_cvt_float_to_fp8(sf_value, __NV_SATFINITE, __NV_E4M3);
    const float sf_decoded = e4m3_to_float(sf);
    out_scale = sf_decoded != 0.0f ? rcp_approx_ftz(sf_decoded * rcp_approx_ftz(gs)) : 0.0f;
  } else {
    const float sf_value = __fmul_rn(gs, __fmul_rn(amax, kInvSix));
    sf = sf_value != sf_value ? 0x7Fu : float_to_e4m3_saturate(sf_value);
    const float sf_decoded = e4m3_to_float(sf);
    out_scale = sf_decoded != 0.0f ? __frcp_rn(__fmul_rn(sf_decoded, inv_gs)) : 0.0f;
  }

  uint32_t packed[2] = {0, 0};
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const float even = __uint_as_float(w[j] << 16);
    const float odd = __uint_as_float(w[j] & 0xFFFF0000u);
    packed[j / 4] |= e2m1x2<kFast>(__fmul_rn(even, out_scale), __fmul_rn(odd, out_scale)) << (8 * (j % 4));
  }
  return {make_uint2(packed[0], packed[1]), sf};
}

// 16 decoded values as BF16 bits: bf16((e2m1 * sf) * multiplier).
__device__ __forceinline__ void decode_block(uint2 packed, float sf, float multiplier, uint4 (&out)[2]) {
  uint32_t w[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const uint32_t word = j < 4 ? packed.x : packed.y;
    const uint32_t byte = (word >> (8 * (j % 4))) & 0xFFu;
    const float even = __fmul_rn(__fmul_rn(e2m1_to_float(byte & 0xFu), sf), multiplier);
    const float odd = __fmul_rn(__fmul_rn(e2m1_to_float(byte >> 4), sf), multiplier);
    w[j] = static_cast<uint32_t>(float_to_bf16_bits(even)) | (static_cast<uint32_t>(float_to_bf16_bits(odd)) << 16);
  }
  out[0] = make_uint4(w[0], w[1], w[2], w[3]);
  out[1] = make_uint4(w[4], w[5], w[6], w[7]);
}

__device__ __forceinline__ int64_t first_index() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t index_stride() { return int64_t(gridDim.x) * blockDim.x; }

// Threads walk the (padded, when swizzled) grid of scale positions [grid_rows, grid_cols]; those
// outside the [m, cols] data write a zero scale byte.
template <bool kFast, bool kSwizzled>
__global__ void __launch_bounds__(kActivationThreads)
    quantize_activation_kernel(const uint4* __restrict__ x, int64_t m, int64_t cols, int64_t grid_rows,
                               int64_t grid_cols, float gs, float inv_gs, uint2* __restrict__ packed,
                               uint8_t* __restrict__ scales) {
  const int64_t total = grid_rows * grid_cols;
  for (int64_t t = first_index(); t < total; t += index_stride()) {
    const int64_t row = t / grid_cols, col = t - row * grid_cols;
    uint32_t sf = 0;
    if (row < m && col < cols) {
      const int64_t block = row * cols + col;
      const uint4 v[2] = {x[2 * block], x[2 * block + 1]};
      const QuantizedBlock q = quantize_block<kFast>(v, gs, inv_gs);
      packed[block] = q.packed;
      sf = q.scale;
    }
    scales[kSwizzled ? nvfp4_swizzled_scale_offset(row, col, cols) : row * cols + col] = static_cast<uint8_t>(sf);
  }
}

template <bool kSwizzled>
__global__ void __launch_bounds__(kActivationThreads)
    dequantize_activation_kernel(const uint2* __restrict__ packed, const uint8_t* __restrict__ scales, int64_t m,
                                 int64_t cols, float multiplier, uint4* __restrict__ out) {
  const int64_t total = m * cols;
  for (int64_t t = first_index(); t < total; t += index_stride()) {
    const int64_t row = t / cols, col = t - row * cols;
    const float sf = e4m3_to_float(scales[kSwizzled ? nvfp4_swizzled_scale_offset(row, col, cols) : t]);
    uint4 o[2];
    decode_block(packed[t], sf, multiplier, o);
    out[2 * t] = o[0];
    out[2 * t + 1] = o[1];
  }
}

template <bool kFast>
__global__ void __launch_bounds__(kActivationThreads)
    fake_quantize_activation_kernel(const uint4* __restrict__ x, int64_t blocks, float gs, float inv_gs,
                                    float multiplier, uint4* __restrict__ out) {
  for (int64_t t = first_index(); t < blocks; t += index_stride()) {
    const uint4 v[2] = {x[2 * t], x[2 * t + 1]};
    const QuantizedBlock q = quantize_block<kFast>(v, gs, inv_gs);
    uint4 o[2];
    decode_block(q.packed, e4m3_to_float(q.scale), multiplier, o);
    out[2 * t] = o[0];
    out[2 * t + 1] = o[1];
  }
}

std::string activation_shape(int64_t m, int64_t k) { return "M=" + std::to_string(m) + " K=" + std::to_string(k); }

void check_shape(const char* kernel, int64_t m, int64_t k) {
  if (m < 0 || k <= 0 || k % 16 != 0)
    throw InputError(std::string(kernel) + ": activation [" + activation_shape(m, k) +
                     "] needs M >= 0 and K a positive multiple of 16");
}

void check_pointer(const char* kernel, const char* name, const void* p, size_t alignment, int64_t m, int64_t k) {
  if (p == nullptr) throw InputError(std::string(kernel) + " [" + activation_shape(m, k) + "]: " + name + " is null");
  if (reinterpret_cast<uintptr_t>(p) % alignment != 0)
    throw InputError(std::string(kernel) + " [" + activation_shape(m, k) + "]: " + name + " is not " +
                     std::to_string(alignment) + "-byte aligned");
}

void check_global_scale(const char* kernel, float gs, int64_t m, int64_t k) {
  if (!std::isfinite(gs) || !(gs > 0.0f))
    throw InputError(std::string(kernel) + " [" + activation_shape(m, k) + "]: the global scale must be finite and > 0, got " +
                     std::to_string(gs));
}

unsigned grid_for(int64_t threads) {
  const unsigned blocks = ceil_div(static_cast<size_t>(threads), kActivationThreads);
  return blocks < kMaxBlocks ? blocks : kMaxBlocks;
}

}  // namespace

void quantize_activation(const uint16_t* x, int64_t m, int64_t k, float global_scale, Nvfp4ScaleLayout layout,
                         uint8_t* packed, uint8_t* scales, StreamHandle stream, ActivationQuantMath math) {
  constexpr const char* kName = "quantize_activation";
  check_shape(kName, m, k);
  check_global_scale(kName, global_scale, m, k);
  if (m == 0) return;
  check_pointer(kName, "x", x, 16, m, k);
  check_pointer(kName, "packed", packed, 8, m, k);
  check_pointer(kName, "scales", scales, 1, m, k);
  const int64_t cols = k / 16;
  const bool swizzled = layout == Nvfp4ScaleLayout::Swizzled128x4;
  const int64_t grid_rows = swizzled ? nvfp4_swizzled_scale_rows(m) : m;
  const int64_t grid_cols = swizzled ? nvfp4_swizzled_scale_cols(cols) : cols;
  const float inv_gs = 1.0f / global_scale;
  const unsigned grid = grid_for(grid_rows * grid_cols);
  const auto* in = reinterpret_cast<const uint4*>(x);
  auto* out = reinterpret_cast<uint2*>(packed);
  const bool fast = math == ActivationQuantMath::Fast;
  if (fast && swizzled)
    quantize_activation_kernel<true, true><<<grid, kActivationThreads, 0, stream>>>(in, m, cols, grid_rows, grid_cols, global_scale, inv_gs, out, scales);
  else if (fast)
    quantize_activation_kernel<true, false><<<grid, kActivationThreads, 0, stream>>>(in, m, cols, grid_rows, grid_cols, global_scale, inv_gs, out, scales);
  else if (swizzled)
    quantize_activation_kernel<false, true><<<grid, kActivationThreads, 0, stream>>>(in, m, cols, grid_rows, grid_cols, global_scale, inv_gs, out, scales);
  else
    quantize_activation_kernel<false, false><<<grid, kActivationThreads, 0, stream>>>(in, m, cols, grid_rows, grid_cols, global_scale, inv_gs, out, scales);
  check_launch(kName, [&] {
    return activation_shape(m, k) + (swizzled ? " swizzled" : " linear") + (fast ? " fast" : " exact");
  });
}

void dequantize_activation(const uint8_t* packed, const uint8_t* scales, Nvfp4ScaleLayout layout, int64_t m,
                           int64_t k, float multiplier, uint16_t* out, StreamHandle stream) {
  constexpr const char* kName = "dequantize_activation";
  check_shape(kName, m, k);
  if (m == 0) return;
  check_pointer(kName, "packed", packed, 8, m, k);
  check_pointer(kName, "scales", scales, 1, m, k);
  check_pointer(kName, "out", out, 16, m, k);
  const int64_t cols = k / 16;
  const unsigned grid = grid_for(m * cols);
  const auto* in = reinterpret_cast<const uint2*>(packed);
  auto* o = reinterpret_cast<uint4*>(out);
  const bool swizzled = layout == Nvfp4ScaleLayout::Swizzled128x4;
  if (swizzled)
    dequantize_activation_kernel<true><<<grid, kActivationThreads, 0, stream>>>(in, scales, m, cols, multiplier, o);
  else
    dequantize_activation_kernel<false><<<grid, kActivationThreads, 0, stream>>>(in, scales, m, cols, multiplier, o);
  check_launch(kName, [&] { return activation_shape(m, k) + (swizzled ? " swizzled" : " linear"); });
}

void fake_quantize_activation(const uint16_t* x, int64_t m, int64_t k, float global_scale, float multiplier,
                              uint16_t* out, StreamHandle stream, ActivationQuantMath math) {
  constexpr const char* kName = "fake_quantize_activation";
  check_shape(kName, m, k);
  check_global_scale(kName, global_scale, m, k);
  if (m == 0) return;
  check_pointer(kName, "x", x, 16, m, k);
  check_pointer(kName, "out", out, 16, m, k);
  const int64_t blocks = m * (k / 16);
  const unsigned grid = grid_for(blocks);
  const float inv_gs = 1.0f / global_scale;
  const auto* in = reinterpret_cast<const uint4*>(x);
  auto* o = reinterpret_cast<uint4*>(out);
  const bool fast = math == ActivationQuantMath::Fast;
  if (fast)
    fake_quantize_activation_kernel<true><<<grid, kActivationThreads, 0, stream>>>(in, blocks, global_scale, inv_gs, multiplier, o);
  else
    fake_quantize_activation_kernel<false><<<grid, kActivationThreads, 0, stream>>>(in, blocks, global_scale, inv_gs, multiplier, o);
  check_launch(kName, [&] { return activation_shape(m, k) + (fast ? " fast" : " exact"); });
}

}  // namespace fp4kit::cuda
