#include "formats/nvfp4_scale_search.h"

#include <cmath>
#include <optional>

#include "base/error.h"
#include "formats/e4m3.h"
#include "formats/modelopt_gpu_arith.h"
#include "formats/nvfp4_four_over_six.h"
#include "formats/nvfp4_mse_sweep.h"

namespace fp4kit {

namespace {

constexpr Nvfp4ScaleMethod kMethods[] = {Nvfp4ScaleMethod::Max, Nvfp4ScaleMethod::Mse, Nvfp4ScaleMethod::FourOverSix,
                                         Nvfp4ScaleMethod::Hessian};

bool is_cuda(Nvfp4Numerics n) { return n == Nvfp4Numerics::ModelOptCuda; }

}  // namespace

void require_no_statistics(Nvfp4ScaleMethod m) {
  if (m == Nvfp4ScaleMethod::Hessian)
    throw Error("hessian block scales need the XᵀX statistics of the weight's input (nvfp4_hessian_quantize_ref)");
}

namespace {

// torch.clamp(s, lo, hi): NaN passes through.
float clamp_scale_keep_nan(float s, float lo, float hi) {
  if (s < lo) return lo;
  if (s > hi) return hi;
  return s;
}

// The searched amax of one block of 16 values (as floats).
float searched_block_amax(const float* x, const Nvfp4SearchScaling& sc, const Nvfp4MseCandidates* candidates,
                          int lanes, bool full_sweep) {
  if (sc.method == Nvfp4ScaleMethod::Mse) {
    const int k = full_sweep ? mse_sweep_full(x, *candidates, lanes) : mse_sweep(x, *candidates, lanes);
    return candidates->block_amax(k);
  }
  // The max calibrator's block amax (NaN wins, as in torch's amax), then 1 or 1.5 times it.
  float amax = 0.0f;
  for (int i = 0; i < 16; ++i) {
    const float a = std::fabs(x[i]);
    if (std::isnan(a)) {
      amax = a;
      break;
    }
    if (a > amax) amax = a;
  }
  return four_over_six_picks_four(x, amax, sc.global_amax) ? amax * 1.5f : amax;
}

template <typename Fn>
void for_each_block(FloatSpan src, const Nvfp4SearchScaling& sc, bool full_sweep, Fn&& fn) {
  require_no_statistics(sc.method);
  std::optional<Nvfp4MseCandidates> candidates;
  if (sc.method == Nvfp4ScaleMethod::Mse) candidates.emplace(sc.global_amax);
  const int lanes = mse_sweep_lanes(src.dtype);
  float x[16];
  for (size_t b = 0; b < src.size / 16; ++b) {
    for (size_t i = 0; i < 16; ++i) x[i] = src.at(b * 16 + i);
    fn(b, searched_block_amax(x, sc, candidates ? &*candidates : nullptr, lanes, full_sweep));
  }
}

}  // namespace

std::string_view scale_method_name(Nvfp4ScaleMethod m) {
  switch (m) {
    case Nvfp4ScaleMethod::Max: return "max";
    case Nvfp4ScaleMethod::Mse: return "mse";
    case Nvfp4ScaleMethod::FourOverSix: return "four-over-six";
    case Nvfp4ScaleMethod::Hessian: return "hessian";
  }
  return "?";
}

std::optional<Nvfp4ScaleMethod> scale_method_from_name(std::string_view name) {
  for (Nvfp4ScaleMethod m : kMethods)
    if (scale_method_name(m) == name) return m;
  return std::nullopt;
}

std::string scale_method_names() {
  std::string out;
  for (Nvfp4ScaleMethod m : kMethods) {
    if (!out.empty()) out += ", ";
    out += scale_method_name(m);
  }
  return out;
}

float scale_method_fp8_max(Nvfp4ScaleMethod m) { return m == Nvfp4ScaleMethod::FourOverSix ? 256.0f : E4M3::kMax; }

bool scale_method_supports(Nvfp4ScaleMethod m, Nvfp4Numerics n) {
  return m == Nvfp4ScaleMethod::Max || n == Nvfp4Numerics::ModelOpt || n == Nvfp4Numerics::ModelOptCuda;
}

float nvfp4_method_global_scale(float global_amax, Nvfp4ScaleMethod m, Nvfp4Numerics n, DType source) {
  if (m == Nvfp4ScaleMethod::Max) return nvfp4_global_scale(global_amax, n, source);
  // get_weights_scaling_factor_2_from_quantizer: global_amax / (E2M1_MAX * fp8_max).
  return gpu_arith::div_by_constant(global_amax, 6.0f * scale_method_fp8_max(m), is_cuda(n));
}

Nvfp4SearchScaling nvfp4_search_scaling(float global_amax, Nvfp4ScaleMethod m, Nvfp4Numerics n, DType source) {
  return Nvfp4SearchScaling{m, n, global_amax, nvfp4_method_global_scale(global_amax, m, n, source), source};
}

uint8_t modelopt_static_block_scale(float block_amax, float global_amax, float fp8_max, bool cuda) {
  // get_weights_scaling_factor_from_quantizer, static path, then _cast_per_block_scale_to_fp8.
  const float scale_max = gpu_arith::div_by_constant(global_amax, 6.0f, cuda);
  float scale = gpu_arith::div_by_constant(block_amax, 6.0f, cuda);
  if (scale == 0.0f) scale = 1.0f;
  const float normalised = clamp_scale_keep_nan(scale * fp8_max / scale_max, E4M3::kMinSubnormal, E4M3::kMax);
  const uint8_t byte = E4M3::from_float(normalised).bits;
  // A GPU's NaN is positive (0x7F) where an x86 CPU's 0/0 gives the negative one.
  return cuda && (byte & 0x7F) == 0x7F ? uint8_t{0x7F} : byte;
}

void nvfp4_search_block_amax(FloatSpan src, const Nvfp4SearchScaling& sc, float* block_amax, bool full_sweep) {
  for_each_block(src, sc, full_sweep, [&](size_t b, float amax) { block_amax[b] = amax; });
}

void nvfp4_search_quantize(FloatSpan src, const Nvfp4SearchScaling& sc, uint8_t* packed, uint8_t* scales,
                           bool full_sweep) {
  const float fp8_max = scale_method_fp8_max(sc.method);
  const bool cuda = is_cuda(sc.numerics);
  for_each_block(src, sc, full_sweep, [&](size_t b, float amax) {
    scales[b] = modelopt_static_block_scale(amax, sc.global_amax, fp8_max, cuda);
  });
  // NVFP4QTensor.quantize with the exported scales: x / (f32(scale) * weight_scale_2) to E2M1.
  nvfp4_ref::quantize_with_scales(src, scales, Nvfp4Scaling{sc.numerics, sc.weight_scale_2, src.dtype}, packed);
}

namespace {

void ref_block_amax(FloatSpan src, const Nvfp4SearchScaling& sc, float* block_amax) {
  nvfp4_search_block_amax(src, sc, block_amax);
}

void ref_quantize(FloatSpan src, const Nvfp4SearchScaling& sc, uint8_t* packed, uint8_t* scales) {
  nvfp4_search_quantize(src, sc, packed, scales);
}

const Nvfp4SearchKernels kScalarSearchKernels = {ref_block_amax, ref_quantize};

}  // namespace

const Nvfp4SearchKernels& nvfp4_search_kernels(Isa isa) {
  if (const Nvfp4SearchKernels* k = nvfp4_search_simd::kernels(isa)) return *k;
  return kScalarSearchKernels;
}

}  // namespace fp4kit
