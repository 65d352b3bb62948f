#include "formats/mxfp4_cast.h"

#include <cmath>

#include "formats/bf16.h"
#include "formats/e2m1.h"
#include "formats/e8m0.h"
#include "formats/nvfp4.h"

namespace fp4kit {

namespace {

// The exporter's per-group window: block scales 2^(k-m) with k in [k_own-17, k_own] are exact.
bool window_holds(int k, int k_own) {
  const int delta = k - (k_own - 8);
  return delta >= -9 && delta <= 8;
}

float group_amax(int k, bool window, unsigned max_magnitude) {
  const float pow2k = std::ldexp(1.0f, k);
  return window ? 6.0f * pow2k : E2M1::kValues[max_magnitude] * pow2k;
}

unsigned largest_magnitude(const uint8_t* group_packed) {
  unsigned max_code = 0;
  for (size_t j = 0; j < kMxfp4BlockSize; ++j) {
    const unsigned mag = unpack_e2m1(group_packed[j / 2], static_cast<unsigned>(j)).bits & 0x7u;
    max_code = mag > max_code ? mag : max_code;
  }
  return max_code;
}

Nvfp4Scaling cast_scaling(const Mxfp4CastParams& p) { return {Nvfp4Numerics::ModelOpt, p.weight_scale_2, DType::BF16}; }

}  // namespace

Mxfp4CastParams mxfp4_cast_params(const uint8_t* scales, size_t count, int k_max_shared) {
  return {mxfp4_cast_weight_scale_2(k_max_shared), k_max_shared, mxfp4_max_exponent(scales, count, -E8M0::kBias)};
}

Mxfp4CastTable::Mxfp4CastTable(const uint8_t* scales, size_t count, const Mxfp4CastParams& params)
    : params_(params), entries_(256 * 8) {
  std::array<bool, 256> present{};
  for (size_t i = 0; i < count; ++i) present[scales[i]] = true;
  const Nvfp4Scaling scaling = cast_scaling(params);
  for (unsigned b = 0; b < 256; ++b) {
    const int k = static_cast<int>(b) - E8M0::kBias;
    window_[b] = window_holds(k, params.k_own);
    if (!present[b]) continue;
    const float pow2k = std::ldexp(1.0f, k);
    const float source_scale = E8M0{static_cast<uint8_t>(b)}.to_float();
    for (unsigned mag = 0; mag < (window_[b] ? 1u : 8u); ++mag) {
      Mxfp4CastEntry& e = entries_[b * 8 + mag];
      e.scale = modelopt_block_scale(group_amax(k, window_[b], mag), params.weight_scale_2, false);
      const float divisor = nvfp4_quant_divisor(e.scale, scaling);
      const float multiplier = nvfp4_dequant_multiplier(e.scale, scaling);
      for (unsigned c = 0; c < 16; ++c) {
        const float value = BF16::from_float(E2M1::kSignedZeroValues[c] * pow2k).to_float();
        e.code[c] = E2M1::from_float(value / divisor).bits;
        if (!(E2M1::kDeepSeekValues[c] * source_scale == E2M1::kValues[e.code[c]] * multiplier))
          e.inexact_codes = static_cast<uint16_t>(e.inexact_codes | (1u << c));
      }
    }
  }
}

namespace mxfp4_cast_ref {

Mxfp4CastStats cast(const uint8_t* packed, const uint8_t* scales, size_t n, const Mxfp4CastTable& table,
                    uint8_t* out_packed, uint8_t* out_scales) {
  const Mxfp4CastParams& p = table.params();
  const Nvfp4Scaling scaling = cast_scaling(p);
  Mxfp4CastStats stats;
  const size_t groups = n / kMxfp4BlockSize;
  stats.groups = groups;
  uint16_t values[kMxfp4BlockSize];
  float source[kMxfp4BlockSize], roundtrip[kMxfp4BlockSize];
  for (size_t g = 0; g < groups; ++g) {
    const uint8_t* group_packed = packed + g * kMxfp4BlockSize / 2;
    const int k = static_cast<int>(scales[g]) - E8M0::kBias;
    const bool window = window_holds(k, p.k_own);
    const float amax = group_amax(k, window, window ? 0 : largest_magnitude(group_packed));
    uint8_t* block_scales = out_scales + g * 2;
    block_scales[0] = block_scales[1] = modelopt_block_scale(amax, p.weight_scale_2, false);
    // ModelOpt requantizes its own MXFP4 dequant (BF16, code 0x8 as -0.0) with these scales.
    const float pow2k = std::ldexp(1.0f, k);
    for (size_t j = 0; j < kMxfp4BlockSize; ++j) {
      const uint8_t code = unpack_e2m1(group_packed[j / 2], static_cast<unsigned>(j)).bits;
      values[j] = BF16::from_float(E2M1::kSignedZeroValues[code] * pow2k).bits;
    }
    nvfp4_ref::quantize_with_scales(FloatSpan{values, DType::BF16, kMxfp4BlockSize}, block_scales, scaling,
                                    out_packed + g * kMxfp4BlockSize / 2);

    if (scales[g] == 0) ++stats.zero_scale_groups;
    if (scales[g] == 0 || k >= p.k_max_shared - 17) ++stats.reported_lossless;
    mxfp4_ref::dequantize_f32(group_packed, scales + g, kMxfp4BlockSize, source);
    nvfp4_ref::dequantize(out_packed + g * kMxfp4BlockSize / 2, block_scales, kMxfp4BlockSize, scaling, roundtrip);
    bool exact = true;
    for (size_t j = 0; j < kMxfp4BlockSize; ++j) exact = exact && (source[j] == roundtrip[j]);
    if (exact) ++stats.exact_groups;
  }
  return stats;
}

}  // namespace mxfp4_cast_ref

Mxfp4CastKernel mxfp4_cast_kernel(Isa isa) {
  if (Mxfp4CastKernel k = mxfp4_cast_simd::cast_kernel(isa)) return k;
  return mxfp4_cast_ref::cast;
}

Mxfp4CastStats mxfp4_to_nvfp4_cast(const uint8_t* packed, const uint8_t* scales, size_t n, float weight_scale_2,
                                   int k_max_shared, uint8_t* out_packed, uint8_t* out_scales) {
  Mxfp4CastParams params = mxfp4_cast_params(scales, n / kMxfp4BlockSize, k_max_shared);
  params.weight_scale_2 = weight_scale_2;
  const Mxfp4CastTable table(scales, n / kMxfp4BlockSize, params);
  return mxfp4_cast_kernel()(packed, scales, n, table, out_packed, out_scales);
}

}  // namespace fp4kit
