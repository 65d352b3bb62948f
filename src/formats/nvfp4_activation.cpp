#include "formats/nvfp4_activation.h"

#include <cmath>
#include <limits>
#include <string>

#include "base/error.h"
#include "formats/bf16.h"
#include "formats/e2m1.h"
#include "formats/e4m3.h"

namespace fp4kit {
namespace {

constexpr int64_t kActivationBlock = 16;
// fl(1/6) = 0x3E2AAAAB, the exact-reciprocal stand-in for rcp.approx.ftz(6.0f).
constexpr float kInvSix = 1.0f / 6.0f;

void check_shape(const char* what, int64_t m, int64_t k) {
  if (m < 0 || k < 0 || k % kActivationBlock != 0)
    throw InputError(std::string(what) + ": activation [" + std::to_string(m) + ", " + std::to_string(k) +
                     "] needs m >= 0 and k a multiple of 16");
}

}  // namespace

float nvfp4_activation_global_scale(float input_scale) { return 1.0f / input_scale; }

uint8_t e2m1_from_float_satfinite(float y) {
  if (std::isnan(y)) return 0x7;
  return static_cast<uint8_t>(E2M1::magnitude_code(std::fabs(y)) | (std::signbit(y) ? 0x8 : 0x0));
}

uint8_t quantize_activation_block(const float* x16, float global_scale, uint8_t* packed8) {
  // max.bf16x2 semantics: a NaN operand loses to a number; all NaN gives NaN.
  float amax = std::numeric_limits<float>::quiet_NaN();
  for (int64_t i = 0; i < kActivationBlock; ++i) {
    const float a = std::fabs(x16[i]);
    if (!std::isnan(a) && (std::isnan(amax) || a > amax)) amax = a;
  }
  const float sf_value = global_scale * (amax * kInvSix);
  const uint8_t sf = std::isnan(sf_value) ? uint8_t{0x7F} : E4M3::from_float_saturate(sf_value).bits;
  const float sf_decoded = E4M3{sf}.to_float();
  const float out_scale = sf_decoded != 0.0f ? 1.0f / (sf_decoded * (1.0f / global_scale)) : 0.0f;
  for (int64_t j = 0; j < kActivationBlock / 2; ++j) {
    const uint8_t even = e2m1_from_float_satfinite(x16[2 * j] * out_scale);
    const uint8_t odd = e2m1_from_float_satfinite(x16[2 * j + 1] * out_scale);
    packed8[j] = static_cast<uint8_t>(even | (odd << 4));
  }
  return sf;
}

void quantize_activation_ref(const uint16_t* x, int64_t m, int64_t k, float global_scale, Nvfp4ScaleLayout layout,
                             uint8_t* packed, uint8_t* scales) {
  check_shape("NVFP4 activation quantize", m, k);
  if (!std::isfinite(global_scale) || !(global_scale > 0.0f))
    throw InputError("NVFP4 activation quantize: the global scale must be finite and > 0, got " +
                     std::to_string(global_scale));
  const int64_t cols = k / kActivationBlock;
  if (layout == Nvfp4ScaleLayout::Swizzled128x4) {
    const int64_t bytes = nvfp4_scale_bytes(m, cols, layout);
    for (int64_t i = 0; i < bytes; ++i) scales[i] = 0;
  }
  float block[kActivationBlock];
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const uint16_t* src = x + r * k + c * kActivationBlock;
      for (int64_t i = 0; i < kActivationBlock; ++i) block[i] = BF16{src[i]}.to_float();
      scales[nvfp4_scale_offset(r, c, cols, layout)] =
          quantize_activation_block(block, global_scale, packed + r * (k / 2) + c * (kActivationBlock / 2));
    }
  }
}

void dequantize_activation_ref(const uint8_t* packed, const uint8_t* scales, Nvfp4ScaleLayout layout, int64_t m,
                               int64_t k, float multiplier, float* out) {
  check_shape("NVFP4 activation dequantize", m, k);
  const int64_t cols = k / kActivationBlock;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float sf = E4M3{scales[nvfp4_scale_offset(r, c, cols, layout)]}.to_float();
      const uint8_t* q = packed + r * (k / 2) + c * (kActivationBlock / 2);
      float* dst = out + r * k + c * kActivationBlock;
      for (int64_t i = 0; i < kActivationBlock; ++i)
        dst[i] = (unpack_e2m1(q[i / 2], static_cast<unsigned>(i)).to_float() * sf) * multiplier;
    }
  }
}

void dequantize_activation_bf16_ref(const uint8_t* packed, const uint8_t* scales, Nvfp4ScaleLayout layout,
                                    int64_t m, int64_t k, float multiplier, uint16_t* out) {
  check_shape("NVFP4 activation dequantize", m, k);
  const int64_t cols = k / kActivationBlock;
  float row[kActivationBlock];
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      // One block at a time through the F32 decode, so the two decodes cannot drift apart.
      const int64_t s = nvfp4_scale_offset(r, c, cols, layout);
      const uint8_t* q = packed + r * (k / 2) + c * (kActivationBlock / 2);
      dequantize_activation_ref(q, scales + s, Nvfp4ScaleLayout::Linear, 1, kActivationBlock, multiplier, row);
      for (int64_t i = 0; i < kActivationBlock; ++i) out[r * k + c * kActivationBlock + i] = BF16::from_float(row[i]).bits;
    }
  }
}

}  // namespace fp4kit
