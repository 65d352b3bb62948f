#pragma once
// The statistic of max calibration: for every linear module, the largest |x| its input ever held
// (ModelOpt's per-tensor max calibrator, `x.abs().amax()`), and the file that carries it: a
// safetensors file of F32 0-d tensors `<module>.input_amax`, the format `convert --calib` reads.
#include <cstddef>
#include <map>
#include <string>
#include <string_view>

namespace fp4kit {

class AmaxTable {
 public:
  // max |x| over x[0..n) joins the module's value. A non-finite element makes the value NaN for
  // good, so that the run fails naming the module instead of writing a scale from garbage.
  void observe(const std::string& module, const float* x, size_t n);
  // Joins a value taken elsewhere (another layer's file, a resumed run); max, NaN sticks.
  void merge(const std::string& module, float amax);
  void merge(const AmaxTable& other);

  bool has(std::string_view module) const { return values_.find(module) != values_.end(); }
  float at(std::string_view module) const;  // Error if absent
  const std::map<std::string, float, std::less<>>& values() const { return values_; }
  size_t size() const { return values_.size(); }
  // The first module whose value is NaN or infinite, or "" when all are finite.
  std::string first_non_finite() const;

  // Atomically (temp name, fsync, rename); tensors sorted by name; `metadata` goes in the header.
  void save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const;
  // InputError naming file and tensor for anything but F32 0-d `<module>.input_amax` tensors.
  static AmaxTable load(const std::string& path);

 private:
  std::map<std::string, float, std::less<>> values_;
};

// max |x| over n floats, NaN if any is NaN; the order of the reduction cannot change a max.
float max_abs(const float* x, size_t n);

}  // namespace fp4kit
