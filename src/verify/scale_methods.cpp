#include "verify/scale_methods.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "convert/convert_plan.h"
#include "verify/layout_config.h"

namespace fp4kit::verify {

std::map<std::string, std::string> read_scale_methods(const std::string& checkpoint_dir) {
  std::map<std::string, std::string> out;
  std::ifstream in(std::filesystem::path(checkpoint_dir) / std::string(kConvertPlanFileName), std::ios::binary);
  if (!in) return out;
  const nlohmann::json plan = nlohmann::json::parse(std::istreambuf_iterator<char>(in), {}, nullptr, false);
  if (plan.is_discarded() || !plan.is_object() || !plan.contains("scale_methods") || !plan["scale_methods"].is_object())
    return out;
  for (const auto& [weight, method] : plan["scale_methods"].items())
    if (method.is_string()) out[module_of_weight(weight)] = method.get<std::string>();
  return out;
}

}  // namespace fp4kit::verify
