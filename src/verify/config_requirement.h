#pragma once
// A loader's config requirement (models/engine_contract.h ConfigRequirement) checked against the
// checkpoint's config files.
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "models/engine_contract.h"
#include "verify/layout_config.h"

namespace fp4kit::verify {

// config.json or hf_quant_config.json as read, nullptr if missing or malformed.
const nlohmann::json* config_file(const LayoutConfig& config, std::string_view file);
// The value at a JSON pointer; nullopt when absent (or a parent is not an object).
std::optional<nlohmann::json> at_pointer(const nlohmann::json& j, std::string_view pointer);
// "" when the requirement holds, else what is wrong. `model_config` (config.json) sizes per-layer lists.
std::string requirement_problem(const ConfigRequirement& r, const nlohmann::json* file, const nlohmann::json* model_config);

}  // namespace fp4kit::verify
