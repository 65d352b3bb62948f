#pragma once
// Which tensors of a DeepSeek-style checkpoint are quantized weights, which are their scales, and
// which are plain, decided from names, dtypes and shapes alone (no tensor data is read).
//
// A weight `M.weight` has its scale in `M.scale` (V4, and the FP8 repack) or `M.weight_scale_inv`
// (V3). The dtypes decide the storage:
//  - F8_E4M3 weight [N, K] + scale [ceil(N/128), ceil(K/128)], F8_E8M0 or F32: FP8 128x128 blocks;
//  - I8/U8 weight [N, C] (packed FP4, two per byte) + F8_E8M0 scale [N, 2C/32]: MXFP4, K = 2C;
//  - U8 weight [N, C] (`M.weight`, or `M.weight_packed` as compressed-tensors names it) + F8_E4M3
//    `M.weight_scale` [N, 2C/16] + F32 `M.weight_scale_2` (ModelOpt) or `M.weight_global_scale`
//    (compressed-tensors), optionally `M.input_scale` / `M.input_global_scale`: NVFP4, K = 2C;
//  - I8/U8 weight without a scale: plain (an ordinary integer tensor).
// Everything that does not fit is reported as a problem, one line each, naming tensor and file.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "formats/dtype.h"
#include "models/deepseek_v4.h"

namespace fp4kit {

// A tensor as a checkpoint header describes it; `file` is where it lives (used in messages).
struct TensorRef {
  std::string name;
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  std::string file;
};

struct QuantizedWeight {
  std::string weight, scale;           // tensor names
  Storage storage = Storage::Plain;    // Fp8BlockE8M0, Fp8BlockF32 or Mxfp4
  std::vector<int64_t> logical_shape;  // [N, K] in elements (MXFP4, NVFP4: K = 2 * packed columns)
  std::vector<std::string> companions; // NVFP4: weight_scale_2 / weight_global_scale, input scales
};

struct WeightPairing {
  std::vector<QuantizedWeight> quantized;  // in the order of the weights in the input
  std::vector<std::string> plain;          // neither a quantized weight nor a scale, in input order
  // One line each, naming the tensor and its file. A tensor named here is in neither list above.
  std::vector<std::string> problems;
};

// Problems found: an FP8 weight without a scale; a scale without its weight; a weight with both
// scale names; a scale of the wrong dtype or shape for its weight; a scale on a weight that is
// neither FP8 nor packed FP4; an FP8 or packed FP4 weight that is not a matrix.
WeightPairing pair_quantized_weights(const std::vector<TensorRef>& tensors);

// The scale suffixes, for callers that need to recognise a scale by name alone.
inline constexpr std::string_view kV4ScaleSuffix = ".scale";
inline constexpr std::string_view kV3ScaleSuffix = ".weight_scale_inv";
inline constexpr std::string_view kNvfp4BlockScaleSuffix = ".weight_scale";

}  // namespace fp4kit
