#pragma once
// MXFP4 as DeepSeek V4 stores its routed experts: E2M1 pairs packed in I8 [N, K/2] (even index in
// the low nibble) and one E8M0 scale per 32 elements along K, [N, K/32]. Handled as a flat run of
// 32-element groups. Also the lossless cast to NVFP4 that ModelOpt's DeepSeek V4 exporter does.
#include <cstddef>
#include <cstdint>

#include "formats/float_span.h"
#include "formats/isa.h"

namespace fp4kit {

inline constexpr size_t kMxfp4BlockSize = 32;

struct Mxfp4Kernels {
  // DeepSeek's official dequant: FP4_TABLE[q] * 2^(e-127) in f32 (exact; code 0x8 is +0.0).
  void (*dequantize_f32)(const uint8_t* packed, const uint8_t* scales, size_t n, float* out);
  // The same rounded to BF16 (also exact: every product fits in BF16).
  void (*dequantize_bf16)(const uint8_t* packed, const uint8_t* scales, size_t n, uint16_t* out);
  // DeepSeek's fp4_quant rule (see mxfp4_ref::quantize); n = src.size, a multiple of 32.
  void (*quantize)(FloatSpan src, uint8_t* packed, uint8_t* scales);
};
const Mxfp4Kernels& mxfp4_kernels(Isa isa = preferred_isa());

namespace mxfp4_ref {
void dequantize_f32(const uint8_t* packed, const uint8_t* scales, size_t n, float* out);
void dequantize_bf16(const uint8_t* packed, const uint8_t* scales, size_t n, uint16_t* out);
// DeepSeek's fp4_quant rule: per group s = 2^ceil(log2(max(amax, 6*2^-126)/6)) (exact ceil of the
// exact log2), q = E2M1(x/s) ties to even, sign kept. NaN elements do not count towards amax;
// an infinite amax gives the largest scale, 2^127.
void quantize(FloatSpan src, uint8_t* packed, uint8_t* scales);
}  // namespace mxfp4_ref

namespace mxfp4_simd {
// The vector kernels for `isa` (mxfp4_simd.cpp), nullptr where none were compiled.
const Mxfp4Kernels* kernels(Isa isa);
}  // namespace mxfp4_simd

// ---- lossless cast to NVFP4 (ModelOpt DeepSeek V4 exporter, --cast_mxfp4_to_nvfp4) ----------

// Largest exponent (byte - 127) over the nonzero E8M0 bytes, or nullopt-equivalent `fallback`
// when every byte is 0. Call it over w1 and w3 together for the shared weight_scale_2.
int mxfp4_max_exponent(const uint8_t* scales, size_t count, int fallback);
// weight_scale_2 = 2^(k_max - 8): E4M3 block scales 2^(k_j - m) are then exact for k_j in
// [k_max-17, k_max].
float mxfp4_cast_weight_scale_2(int k_max);

struct Mxfp4CastStats {
  size_t groups = 0;            // 32-element MXFP4 groups
  size_t zero_scale_groups = 0; // E8M0 byte 0
  size_t reported_lossless = 0; // ModelOpt's count: k >= k_max-17 or byte 0 (its log line)
  size_t exact_groups = 0;      // groups whose NVFP4 dequant equals the source dequant bit for bit
  Mxfp4CastStats& operator+=(const Mxfp4CastStats&);
};

// A whole tensor of n elements (multiple of 32), with the fastest kernel (formats/mxfp4_cast.h).
// `weight_scale_2` from the shared k_max; `k_max_shared` is what ModelOpt's lossless count uses.
// Out: NVFP4 packed n/2 bytes, E4M3 scales n/16 bytes.
Mxfp4CastStats mxfp4_to_nvfp4_cast(const uint8_t* packed, const uint8_t* scales, size_t n,
                                   float weight_scale_2, int k_max_shared, uint8_t* out_packed,
                                   uint8_t* out_scales);

}  // namespace fp4kit
