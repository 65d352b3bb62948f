#include "formats/mxfp4.h"

#include <cmath>
#include <vector>

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
int ceil_log2(float v) {
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
    scales[g] = E8M0::from_exponent(std::isinf(v) ? 128 : ceil_log2(v)).bits;
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
  if (isa == Isa::Avx2 && isa_supported(Isa::Avx2)) return mxfp4_avx2::kKernels;
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

Mxfp4CastStats mxfp4_to_nvfp4_cast(const uint8_t* packed, const uint8_t* scales, size_t n,
                                   float weight_scale_2, int k_max_shared, uint8_t* out_packed,
                                   uint8_t* out_scales) {
  Mxfp4CastStats stats;
  const size_t groups = n / kMxfp4BlockSize;
  stats.groups = groups;
  // The per-block amax uses the tensor's own k_max (byte-0 groups ignored, sentinel -127).
  const int k_own = mxfp4_max_exponent(scales, groups, -E8M0::kBias);
  const Nvfp4Scaling scaling{Nvfp4Numerics::ModelOpt, weight_scale_2, DType::BF16};
  std::vector<uint16_t> values(kMxfp4BlockSize);
  std::vector<float> source(kMxfp4BlockSize), roundtrip(kMxfp4BlockSize);
  for (size_t g = 0; g < groups; ++g) {
    const uint8_t* group_packed = packed + g * kMxfp4BlockSize / 2;
    const int k = static_cast<int>(scales[g]) - E8M0::kBias;
    const float pow2k = std::ldexp(1.0f, k);
    const int delta = k - (k_own - 8);
    float group_amax;
    if (delta >= -9 && delta <= 8) {
      group_amax = 6.0f * pow2k;  // scale 2^(k-m) is exact in E4M3: nibbles survive verbatim
    } else {
      uint8_t max_code = 0;
      for (size_t j = 0; j < kMxfp4BlockSize; ++j) {
        const uint8_t mag = unpack_e2m1(group_packed[j / 2], static_cast<unsigned>(j)).bits & 0x7;
        max_code = mag > max_code ? mag : max_code;
      }
      group_amax = E2M1::kValues[max_code] * pow2k;
    }
    uint8_t* block_scales = out_scales + g * 2;
    block_scales[0] = block_scales[1] = modelopt_block_scale(group_amax, weight_scale_2, false);
    // ModelOpt requantizes its own MXFP4 dequant (BF16, code 0x8 as -0.0) with these scales.
    for (size_t j = 0; j < kMxfp4BlockSize; ++j) {
      const uint8_t code = unpack_e2m1(group_packed[j / 2], static_cast<unsigned>(j)).bits;
      values[j] = BF16::from_float(E2M1::kSignedZeroValues[code] * pow2k).bits;
    }
    const FloatSpan group{values.data(), DType::BF16, kMxfp4BlockSize};
    nvfp4_ref::quantize_with_scales(group, block_scales, scaling, out_packed + g * kMxfp4BlockSize / 2);

    if (scales[g] == 0) ++stats.zero_scale_groups;
    if (scales[g] == 0 || k >= k_max_shared - 17) ++stats.reported_lossless;
    mxfp4_ref::dequantize_f32(group_packed, scales + g, kMxfp4BlockSize, source.data());
    nvfp4_ref::dequantize(out_packed + g * kMxfp4BlockSize / 2, block_scales, kMxfp4BlockSize, scaling,
                          roundtrip.data());
    bool exact = true;
    for (size_t j = 0; j < kMxfp4BlockSize; ++j) exact = exact && (source[j] == roundtrip[j]);
    if (exact) ++stats.exact_groups;
  }
  return stats;
}

}  // namespace fp4kit
