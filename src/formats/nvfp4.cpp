#include "formats/nvfp4.h"

#include <cmath>
#include <limits>

#include "formats/bf16.h"
#include "formats/e2m1.h"
#include "formats/e4m3.h"
#include "formats/f16.h"

namespace fp4kit {

std::string_view numerics_name(Nvfp4Numerics n) {
  switch (n) {
    case Nvfp4Numerics::ModelOpt: return "modelopt";
    case Nvfp4Numerics::ModelOptCuda: return "modelopt-cuda";
    case Nvfp4Numerics::CompressedTensors: return "compressed-tensors";
  }
  return "?";
}

std::optional<Nvfp4Numerics> numerics_from_name(std::string_view s) {
  for (auto n : {Nvfp4Numerics::ModelOpt, Nvfp4Numerics::ModelOptCuda, Nvfp4Numerics::CompressedTensors})
    if (numerics_name(n) == s) return n;
  return std::nullopt;
}

namespace {

// Round an f32 result to the precision compressed-tensors computes in (the weight dtype).
float round_to_source(float f, DType source) {
  switch (source) {
    case DType::BF16: return round_to_bf16(f);
    case DType::F16: return F16::from_float(f).to_float();
    default: return f;
  }
}

// torch.clamp(s, lo, hi): NaN passes through.
float clamp_keep_nan(float s, float lo, float hi) {
  if (s < lo) return lo;
  if (s > hi) return hi;
  return s;
}

}  // namespace

float nvfp4_global_scale(float amax, Nvfp4Numerics numerics, DType source) {
  switch (numerics) {
    case Nvfp4Numerics::ModelOpt:
      return amax / kNvfp4ScaleDenominator;
    case Nvfp4Numerics::ModelOptCuda: {
      // PyTorch on CUDA turns "tensor / python float" into a multiply by the f32 reciprocal.
      const float reciprocal = 1.0f / kNvfp4ScaleDenominator;
      return amax * reciprocal;
    }
    case Nvfp4Numerics::CompressedTensors: {
      // generate_gparam: 2688 / absmax on a tensor of the weight dtype is reciprocal() * 2688,
      // each step rounded to that dtype; non-finite results (absmax 0 or tiny) become 1.0.
      const float reciprocal = round_to_source(1.0f / amax, source);
      const float gs = round_to_source(reciprocal * kNvfp4ScaleDenominator, source);
      return std::isfinite(gs) ? gs : 1.0f;
    }
  }
  return 1.0f;
}

namespace {

// The quotient ModelOpt's block scale starts from, and compressed-tensors' E4M3 byte before its zero
// rule: shared by the scale and its zero rule.
float modelopt_quotient(float block_amax, float weight_scale_2) { return block_amax / (6.0f * weight_scale_2); }
uint8_t compressed_tensors_raw_byte(float block_amax, const Nvfp4Scaling& sc) {
  return E4M3::from_float_saturate(sc.global * round_to_source(block_amax / 6.0f, sc.source)).bits;
}

}  // namespace

uint8_t modelopt_block_scale(float block_amax, float weight_scale_2, bool zero_block_to_one) {
  const float denom = 6.0f * weight_scale_2;
  float s = modelopt_quotient(block_amax, weight_scale_2);
  // A NaN made here (0/0: an all-zero tensor's wsf2 is 0) has the sign bit set on x86, as in the
  // reference files; Arm's default NaN is positive.
  if (std::isnan(s) && !std::isnan(block_amax) && !std::isnan(denom)) s = -std::numeric_limits<float>::quiet_NaN();
  if (zero_block_to_one && s == 0.0f) s = 1.0f;
  s = clamp_keep_nan(s, 0x1p-9f, E4M3::kMax);
  return E4M3::from_float(s).bits;
}

uint8_t nvfp4_block_scale(float block_amax, const Nvfp4Scaling& sc) {
  if (sc.numerics == Nvfp4Numerics::ModelOpt) return modelopt_block_scale(block_amax, sc.global);
  if (sc.numerics == Nvfp4Numerics::ModelOptCuda) {
    // A GPU's 0/0 is the positive NaN: 0x7F where an x86 CPU gives 0xFF.
    const uint8_t s8 = modelopt_block_scale(block_amax, sc.global);
    return (s8 & 0x7F) == 0x7F ? uint8_t{0x7F} : s8;
  }
  const uint8_t s8 = compressed_tensors_raw_byte(block_amax, sc);
  return (s8 & 0x7F) == 0 ? E4M3::from_float(0.125f).bits : s8;
}

bool nvfp4_block_scale_zero_rule(float block_amax, const Nvfp4Scaling& sc) {
  if (sc.numerics != Nvfp4Numerics::CompressedTensors) return modelopt_quotient(block_amax, sc.global) == 0.0f;
  return (compressed_tensors_raw_byte(block_amax, sc) & 0x7F) == 0;
}

float nvfp4_quant_divisor(uint8_t scale_byte, const Nvfp4Scaling& sc) {
  const float s = E4M3{scale_byte}.to_float();
  const float r = sc.numerics == Nvfp4Numerics::CompressedTensors ? s / sc.global : s * sc.global;
  if (!std::isnan(r)) return r;
  // Which NaN a product of two NaNs gives depends on the operand order the compiler picks (the CPU
  // returns the first), and 0 * Inf gives the CPU's default NaN (negative on x86, positive on Arm):
  // the scale's NaN first, then the global scale's, then x86's default, on every CPU and call site.
  if (std::isnan(s)) return s;
  if (std::isnan(sc.global)) return sc.global;
  return -std::numeric_limits<float>::quiet_NaN();
}

float nvfp4_dequant_multiplier(uint8_t scale_byte, const Nvfp4Scaling& sc) {
  return nvfp4_quant_divisor(scale_byte, sc);
}

namespace nvfp4_ref {

float amax(FloatSpan src) {
  float m = 0.0f;
  for (size_t i = 0; i < src.size; ++i) {
    const float a = std::fabs(src.at(i));
    if (std::isnan(a)) return std::numeric_limits<float>::quiet_NaN();
    if (a > m) m = a;
  }
  return m;
}

void quantize_with_scales(FloatSpan src, const uint8_t* scales, const Nvfp4Scaling& sc,
                          uint8_t* packed) {
  const size_t blocks = src.size / kNvfp4BlockSize;
  for (size_t b = 0; b < blocks; ++b) {
    const float divisor = nvfp4_quant_divisor(scales[b], sc);
    for (size_t j = 0; j < kNvfp4BlockSize; j += 2) {
      const size_t i = b * kNvfp4BlockSize + j;
      const E2M1 even = E2M1::from_float(src.at(i) / divisor);
      const E2M1 odd = E2M1::from_float(src.at(i + 1) / divisor);
      packed[i / 2] = pack_e2m1(even, odd);
    }
  }
}

void quantize(FloatSpan src, const Nvfp4Scaling& sc, uint8_t* packed, uint8_t* scales) {
  const size_t blocks = src.size / kNvfp4BlockSize;
  for (size_t b = 0; b < blocks; ++b) {
    // Block amax as torch reduces it: NaN wins.
    scales[b] = nvfp4_block_scale(amax(src.subspan(b * kNvfp4BlockSize, kNvfp4BlockSize)), sc);
  }
  quantize_with_scales(src, scales, sc, packed);
}

void dequantize(const uint8_t* packed, const uint8_t* scales, size_t n, const Nvfp4Scaling& sc,
                float* out) {
  // compressed-tensors decodes code 0x8 as -0.0 (sign times magnitude), ModelOpt as +0.0.
  const float* values = sc.numerics == Nvfp4Numerics::CompressedTensors ? E2M1::kSignedZeroValues : E2M1::kValues;
  for (size_t b = 0; b < n / kNvfp4BlockSize; ++b) {
    const float m = nvfp4_dequant_multiplier(scales[b], sc);
    for (size_t j = 0; j < kNvfp4BlockSize; ++j) {
      const size_t i = b * kNvfp4BlockSize + j;
      out[i] = values[unpack_e2m1(packed[i / 2], static_cast<unsigned>(i)).bits] * m;
    }
  }
}

}  // namespace nvfp4_ref

namespace {
const Nvfp4Kernels kScalarKernels = {nvfp4_ref::amax, nvfp4_ref::quantize,
                                     nvfp4_ref::quantize_with_scales, nvfp4_ref::dequantize};
}

const Nvfp4Kernels& nvfp4_kernels(Isa isa) {
  if (const Nvfp4Kernels* k = nvfp4_simd::kernels(isa)) return *k;
  return kScalarKernels;
}

}  // namespace fp4kit
