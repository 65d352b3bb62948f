#include "convert/nvfp4_quantizer.h"

#include <cmath>
#include <limits>
#include <mutex>

#include "base/parallel.h"

namespace fp4kit {

namespace {
constexpr size_t kPieceElements = size_t{1} << 18;  // 256 Ki elements per work piece
}

float parallel_amax(FloatSpan src, unsigned threads, Isa isa) {
  const auto& k = nvfp4_kernels(isa);
  std::mutex mutex;
  float result = 0.0f;
  parallel_for(src.size, kPieceElements, threads, [&](size_t b, size_t e) {
    const float m = k.amax(src.subspan(b, e - b));
    std::lock_guard lock(mutex);
    if (std::isnan(m) || std::isnan(result)) result = std::numeric_limits<float>::quiet_NaN();
    else if (m > result) result = m;
  });
  return result;
}

Nvfp4Tensor quantize_nvfp4(FloatSpan src, const Nvfp4Scaling& scaling, unsigned threads, Isa isa) {
  const auto& k = nvfp4_kernels(isa);
  Nvfp4Tensor out;
  out.global = scaling.global;
  out.packed.resize(src.size / 2);
  out.scales.resize(src.size / kNvfp4BlockSize);
  parallel_for(src.size, kPieceElements, threads, [&](size_t b, size_t e) {
    k.quantize(src.subspan(b, e - b), scaling, out.packed.data() + b / 2,
               out.scales.data() + b / kNvfp4BlockSize);
  });
  return out;
}

Nvfp4Tensor quantize_nvfp4_searched(FloatSpan src, const Nvfp4SearchScaling& scaling, unsigned threads, Isa isa) {
  const auto& k = nvfp4_search_kernels(isa);
  Nvfp4Tensor out;
  out.global = scaling.weight_scale_2;
  out.packed.resize(src.size / 2);
  out.scales.resize(src.size / kNvfp4BlockSize);
  // The search costs more per element than max scaling: smaller pieces keep the threads busy.
  parallel_for(src.size, kPieceElements / 16, threads, [&](size_t b, size_t e) {
    k.quantize(src.subspan(b, e - b), scaling, out.packed.data() + b / 2, out.scales.data() + b / kNvfp4BlockSize);
  });
  return out;
}

Nvfp4Tensor quantize_nvfp4_hessian(FloatSpan src, const std::vector<HessianBlockWeight>& weights, const HessianLayout& layout,
                                   const Nvfp4SearchScaling& scaling, unsigned threads, Nvfp4HessianStats& stats,
                                   Isa isa) {
  const auto& k = nvfp4_hessian_kernels(isa);
  Nvfp4Tensor out;
  out.global = scaling.weight_scale_2;
  out.packed.resize(src.size / 2);
  out.scales.resize(src.size / kNvfp4BlockSize);
  std::mutex mutex;
  // Every block tries all 126 candidates with a 16x16 weighting: pieces of 64 blocks.
  parallel_for(src.size, kPieceElements / 256, threads, [&](size_t b, size_t e) {
    Nvfp4HessianStats piece;
    k.quantize(src.subspan(b, e - b), b / kNvfp4BlockSize, weights, layout, scaling, out.packed.data() + b / 2,
               out.scales.data() + b / kNvfp4BlockSize, &piece);
    std::lock_guard lock(mutex);
    stats.blocks += piece.blocks;
    stats.fallback_blocks += piece.fallback_blocks;
  });
  return out;
}

}  // namespace fp4kit
