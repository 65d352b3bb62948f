#pragma once
// The config files against the tensors: every NVFP4 weight is declared NVFP4 (a quantized_layers
// entry, or not excluded), every declared module holds NVFP4 weights, unquantized linear weights
// are excluded (the engines would build NVFP4 parameters for them and fail to load), FP8 block
// weights left in a DeepSeek V4 checkpoint still have their FP8 config.
#include "verify/checkpoint_files.h"
#include "verify/layout_config.h"
#include "verify/nvfp4_modules.h"
#include "verify/verify_report.h"

namespace fp4kit::verify {

void check_config_coverage(const LayoutConfig& config, const CheckpointTensors& tensors, const Nvfp4Inventory& inventory,
                           VerifyReport& report);

}  // namespace fp4kit::verify
