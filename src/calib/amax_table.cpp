#include "calib/amax_table.h"

#include <cmath>
#include <limits>

#include "base/error.h"
#include "convert/calibration.h"
#include "io/quote_name.h"
#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"

namespace fp4kit {

float max_abs(const float* x, size_t n) {
  float m = 0.0f;
  bool nan = false;
  for (size_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    nan |= std::isnan(a);
    m = a > m ? a : m;
  }
  return nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

void AmaxTable::observe(const std::string& module, const float* x, size_t n) { merge(module, max_abs(x, n)); }

void AmaxTable::merge(const std::string& module, float amax) {
  auto [it, fresh] = values_.try_emplace(module, amax);
  if (fresh) return;
  if (std::isnan(it->second)) return;
  if (std::isnan(amax) || amax > it->second) it->second = amax;
}

void AmaxTable::merge(const AmaxTable& other) {
  for (const auto& [module, value] : other.values_) merge(module, value);
}

float AmaxTable::at(std::string_view module) const {
  const auto it = values_.find(module);
  if (it == values_.end()) throw Error("no calibration value for " + io::quote_name(std::string(module)));
  return it->second;
}

std::string AmaxTable::first_non_finite() const {
  for (const auto& [module, value] : values_)
    if (!std::isfinite(value)) return module;
  return "";
}

void AmaxTable::save(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  io::SafetensorsWriter writer(path);
  writer.set_metadata(metadata);
  for (const auto& [module, value] : values_) writer.declare(module + std::string(kInputAmaxSuffix), DType::F32, {});
  writer.begin();
  for (const io::TensorInfo& t : writer.layout()) {
    const float v = values_.find(std::string_view(t.name).substr(0, t.name.size() - kInputAmaxSuffix.size()))->second;
    writer.write(t.name, std::as_bytes(std::span(&v, 1)));
  }
  writer.commit();
}

AmaxTable AmaxTable::load(const std::string& path) {
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  AmaxTable table;
  for (const io::TensorInfo& t : file.tensors()) {
    const std::string where = path + ": tensor " + io::quote_name(t.name);
    if (!t.name.ends_with(kInputAmaxSuffix))
      throw InputError(where + ": is not a '<module>" + std::string(kInputAmaxSuffix) + "' calibration value");
    if (t.dtype != DType::F32 || !t.shape.empty())
      throw InputError(where + ": is " + std::string(dtype_name(t.dtype)) + " " + io::shape_string(t.shape) +
                       ", not an F32 0-d tensor");
    float v = 0;
    file.read(t, std::as_writable_bytes(std::span(&v, 1)));
    table.values_[t.name.substr(0, t.name.size() - kInputAmaxSuffix.size())] = v;
  }
  return table;
}

}  // namespace fp4kit
