#pragma once
// The NVFP4 weights of a checkpoint with their scale tensors, found from the headers, and the checks
// on them that need no weight data: scale dtypes and shapes (ModelOpt or compressed-tensors names),
// per-tensor scales that are finite and positive (the engines divide by them), input scales on
// every weight or on none, and one shared global (and input) scale per group the engines fuse
// into one GEMM (w1/w3, gate/up, q/k/v, wq_a/wkv).
#include <optional>
#include <string>
#include <vector>

#include "io/checkpoint_index.h"
#include "verify/checkpoint_files.h"
#include "verify/layout_config.h"
#include "verify/verify_report.h"

namespace fp4kit::verify {

struct Nvfp4Module {
  std::string module;           // "layers.0.ffn.experts.3.w1"
  std::string weight, block_scale, global_scale, input_scale;  // tensor names ("" if absent)
  bool compressed_tensors = false;  // weight_packed / weight_global_scale / input_global_scale
  std::vector<int64_t> logical_shape;  // [N, K]
  std::optional<float> global_value, input_value;
  // The dequant multiplier of the per-tensor scale: weight_scale_2, or 1/weight_global_scale.
  double global_multiplier() const;
};

struct Nvfp4Inventory {
  std::vector<Nvfp4Module> modules;  // in name order
  std::vector<std::string> plain;    // tensors that are neither NVFP4 weights nor their scales
  std::vector<QuantizedWeight> other_quantized;  // FP8 blocks, MXFP4 (kept in the source format)
  bool pairing_clean = true;         // pair_quantized_weights found no problem
};

Nvfp4Inventory check_nvfp4_modules(const io::Checkpoint& ckpt, const CheckpointTensors& tensors,
                                   const LayoutConfig& config, VerifyReport& report);

}  // namespace fp4kit::verify
