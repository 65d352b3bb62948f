#include "formats/mxfp4.h"

#include <cmath>

#include "formats/bf16.h"
#include "formats/e2m1.h"
#include "formats/e8m0.h"
#include "formats/nvfp4.h"

namespace fp4kit {

namespace mxfp4_ref {

void dequantize_f32(const uint8_t* packed, const uint8_t* scales, size_t n, float* out) {
  for (size_t i = 0; i < n; ++i) {
    const float s = E8M0{scales[i / kMxfp4BlockSize]}.to_float();
    const uint8_t code = unpack_e2m1(packed[i / 2], static_cast<unsigned>(i)).bits;
    out[i] = E2M1::kDeepSeekValues[code] * s;
  }
}

void dequantize_bf16(const uint8_t* packed, const uint8_t* scales, size_t n, uint16_t* out) {
  for (size_t i = 0; i < n; ++i) {
    const float s = E8M0{scales[i / kMxfp4BlockSize]}.to_float();
    const uint8_t code = unpack_e2m1(packed[i / 2], static_cast<unsigned>(i)).bits;
    out[i] = BF16::from_float(E2M1::kDeepSeekValues[code] * s).bits;
  }
}

namespace {
// ceil(log2(v)) for a finite v > 0, exactly.
int mx_ceil_log2(float v) {
  int e;
  const float m = std::frexp(v, &e);  // v = m * 2^e, m in [0.5, 1)
  return m == 0.5f ? e - 1 : e;
}
}  // namespace

void quantize(FloatSpan src, uint8_t* packed, uint8_t* scales) {
  for (size_t g = 0; g < src.size / kMxfp4BlockSize; ++g) {
    float amax = 0.0f;
    for (size_t j = 0; j < kMxfp4BlockSize; ++j) {
      const float a = std::fabs(src.at(g * kMxfp4BlockSize + j));
      amax = a > amax ? a : amax;  // NaN never wins
    }
    const float floor_amax = 6.0f * 0x1p-126f;
    const float v = (amax > floor_amax ? amax : floor_amax) / 6.0f;
    scales[g] = E8M0::from_exponent(std::isinf(v) ? 128 : mx_ceil_log2(v)).bits;
    const float s = E8M0{scales[g]}.to_float();
    for (size_t j = 0; j < kMxfp4BlockSize; j += 2) {
      const size_t i = g * kMxfp4BlockSize + j;
      packed[i / 2] = pack_e2m1(E2M1::from_float(src.at(i) / s), E2M1::from_float(src.at(i + 1) / s));
    }
  }
}

}  // namespace mxfp4_ref

const Mxfp4Kernels& mxfp4_kernels(Isa isa) {
  static const Mxfp4Kernels scalar = {mxfp4_ref::dequantize_f32, mxfp4_ref::dequantize_bf16,
                                      mxfp4_ref::quantize};
  if (const Mxfp4Kernels* k = mxfp4_simd::kernels(isa)) return *k;
  return scalar;
}

int mxfp4_max_exponent(const uint8_t* scales, size_t count, int fallback) {
  int k_max = fallback;
  bool any = false;
  for (size_t i = 0; i < count; ++i) {
    if (scales[i] == 0) continue;
    const int k = static_cast<int>(scales[i]) - E8M0::kBias;
    if (!any || k > k_max) k_max = k;
    any = true;
  }
  return k_max;
}

float mxfp4_cast_weight_scale_2(int k_max) { return std::ldexp(1.0f, k_max - 8); }

Mxfp4CastStats& Mxfp4CastStats::operator+=(const Mxfp4CastStats& o) {
  groups += o.groups;
  zero_scale_groups += o.zero_scale_groups;
  reported_lossless += o.reported_lossless;
  exact_groups += o.exact_groups;
  return *this;
}

}  // namespace fp4kit
