#pragma once
// With --source: every source tensor is accounted for (kept under its name, quantized to NVFP4,
// an FP8-block weight dequantized to BF16, or a scale dropped with its weight) and the output's config.json keeps every field of the
// source's. Returns what the data pass compares: kept tensors byte for byte, NVFP4 weights against
// their source weights.
#include <map>
#include <string>
#include <vector>

#include "io/checkpoint_index.h"
#include "verify/checkpoint_files.h"
#include "verify/layout_config.h"
#include "verify/nvfp4_modules.h"
#include "verify/verify_report.h"

namespace fp4kit::verify {

struct SourceWeight {
  std::string weight;       // the source's tensor name ("....w1.weight")
  std::string storage;      // "mxfp4", "fp8-block", "bf16", ...
  std::string mxfp4_scale;  // E8M0 scale tensor of an MXFP4 source ("" otherwise)
};

struct SourceAccounting {
  std::vector<std::string> kept;               // same name, dtype and shape in both: must be byte-identical
  // FP8-block source weights written as BF16 under their name (layouts that cannot declare FP8
  // blocks): must equal DeepSeek's official BF16 dequant bit for bit.
  std::vector<std::string> dequantized;
  std::map<std::string, SourceWeight> source_of;  // NVFP4 module -> its source weight
  bool source_pairing_clean = true;
};

SourceAccounting account_for_source(const CheckpointTensors& source, const CheckpointTensors& output,
                                    const Nvfp4Inventory& inventory, VerifyReport& report);

// config.json of the output keeps every top-level field of the source's with the same value, and
// (DeepSeek V4 experts-only layout) every field of its quantization_config.
void check_source_config(const std::string& source_dir, const LayoutConfig& config, VerifyReport& report);

}  // namespace fp4kit::verify
