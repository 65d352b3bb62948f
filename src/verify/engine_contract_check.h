#pragma once
// Walks a checkpoint through each serving engine's loader contract (models/engine_contract.h):
// every config field the loader reads, from the file it reads it from; every tensor consumed by a
// parameter of the model config.json describes, with the suffixes of the parameter's format; every
// parameter filled; dtypes and shapes as the loader creates them. An engine whose table does not
// cover the checkpoint's layout is skipped with the reason; one whose loader is read to refuse it
// fails (engine.layout_refused, the families' walk) where it was named, and is skipped otherwise.
//
// Check ids: engine.config_field, engine.tensor_unconsumed, engine.parameter_unfilled,
// engine.dtype, engine.shape. Every message starts with the engine's name.
#include <vector>

#include "models/engine_contract.h"
#include "verify/checkpoint_files.h"
#include "verify/layout_config.h"
#include "verify/nvfp4_modules.h"
#include "verify/verify_report.h"

namespace fp4kit::verify {

// `refusal_fails`: an engine known to refuse the layout fails (engine.layout_refused) instead of
// being skipped with the reason (VerifyOptions::engines_named).
void check_engine_contracts(const std::vector<Engine>& engines, bool refusal_fails, const LayoutConfig& config,
                            const CheckpointTensors& tensors, const Nvfp4Inventory& inventory, VerifyReport& report);

}  // namespace fp4kit::verify
