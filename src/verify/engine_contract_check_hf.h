#pragma once
// Walks a checkpoint of a family with Hugging Face names (DeepSeek V3, Llama-like) through one
// engine's loader contract (models/engine_contract.h HfFamilyContract), in ModelOpt's general layout
// or compressed-tensors': the config fields the engine reads; every linear module of the model
// config.json describes, quantized (the layout's NVFP4 parameters, dtypes and shapes as the loader
// creates them) unless the config excludes it (then the unquantized weight); every plain tensor;
// every checkpoint tensor consumed or skipped by design; and the per-tensor scales of the siblings
// the engine fuses into one parameter bit-identical (it keeps one value for all of them). A layout
// flavour the engine is read to refuse is one finding, with nothing walked, where the engine was
// named (refusal_fails); otherwise the engine is skipped with the reason.
//
// Check ids: engine.config_field, engine.tensor_unconsumed, engine.parameter_unfilled,
// engine.dtype, engine.shape, engine.fused_scale, engine.layout_refused. Every message starts with
// the engine's name.
#include <nlohmann/json.hpp>

#include "models/engine_contract.h"
#include "verify/checkpoint_files.h"
#include "verify/layout_config.h"
#include "verify/nvfp4_modules.h"
#include "verify/verify_report.h"

namespace fp4kit::verify {

// The family table covering config.json's model_type; nullptr for DeepSeek V4 and anything untabled.
const HfFamilyContract* hf_family_contract(const nlohmann::json& config);

EngineVerdict check_hf_engine(Engine engine, const HfFamilyContract& family, const LayoutConfig& config,
                              const CheckpointTensors& tensors, const Nvfp4Inventory& inventory, VerifyReport& report,
                              bool refusal_fails);

}  // namespace fp4kit::verify
