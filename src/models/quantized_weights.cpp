#include "models/quantized_weights.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string_view>
#include <utility>

#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "io/quote_name.h"
#include "io/tensor_info.h"

namespace fp4kit {

namespace {

constexpr std::string_view kWeightSuffix = ".weight";

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// NVFP4's per-tensor scales, which ride along with a weight and its block scale.
constexpr std::string_view kNvfp4Companions[] = {".weight_scale_2", ".weight_global_scale", ".input_scale",
                                                 ".input_global_scale"};
constexpr std::string_view kPackedSuffix = ".weight_packed";  // compressed-tensors' name for the weight

struct ScaleName {
  std::string module;     // "layers.0.ffn.experts.3.w1"
  bool companion = false; // an NVFP4 per-tensor scale rather than a block scale
};

// The module a scale belongs to, by name; nullopt if `name` is not a scale name.
std::optional<ScaleName> scale_name(std::string_view name) {
  for (std::string_view suffix : kNvfp4Companions)
    if (ends_with(name, suffix)) return ScaleName{std::string(name.substr(0, name.size() - suffix.size())), true};
  for (std::string_view suffix : {kV3ScaleSuffix, kNvfp4BlockScaleSuffix, kV4ScaleSuffix})
    if (ends_with(name, suffix)) return ScaleName{std::string(name.substr(0, name.size() - suffix.size())), false};
  return std::nullopt;
}

std::string described(const TensorRef& t) {
  return std::string(dtype_name(t.dtype)) + " " + io::shape_string(t.shape);
}

bool is_packed_fp4_dtype(DType d) { return d == DType::I8 || d == DType::U8; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

class Pairer {
 public:
  explicit Pairer(const std::vector<TensorRef>& tensors) : tensors_(tensors) {}

  WeightPairing run() {
    std::map<std::string_view, size_t> by_name;
    for (size_t i = 0; i < tensors_.size(); ++i) by_name.emplace(tensors_[i].name, i);

    // Every scale finds its weight (`M.weight`, or `M.weight_packed`) first, so that each weight
    // then sees all of its scales.
    std::map<size_t, std::vector<size_t>> scales_of;      // weight index -> block scale indices
    std::map<size_t, std::vector<size_t>> companions_of;  // weight index -> NVFP4 per-tensor scales
    std::vector<bool> is_scale(tensors_.size(), false);
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const auto scale = scale_name(tensors_[i].name);
      if (!scale) continue;
      // (appended, not operator+: GCC 12 gives a false -Wrestrict warning on the latter here)
      std::string weight = scale->module, packed = scale->module;
      weight.append(kWeightSuffix);
      packed.append(kPackedSuffix);
      auto it = by_name.find(weight);
      if (it == by_name.end()) it = by_name.find(packed);
      if (it == by_name.end() && scale->companion) continue;  // e.g. an attention k_scale: not ours
      is_scale[i] = true;
      if (it == by_name.end()) {
        problem(i, "scale " + io::quote_name(tensors_[i].name) + " has no weight " + io::quote_name(weight));
        continue;
      }
      (scale->companion ? companions_of : scales_of)[it->second].push_back(i);
    }

    for (size_t i = 0; i < tensors_.size(); ++i) {
      if (is_scale[i]) continue;
      const auto it = scales_of.find(i);
      const auto ct = companions_of.find(i);
      classify(i, it == scales_of.end() ? std::vector<size_t>{} : it->second,
               ct == companions_of.end() ? std::vector<size_t>{} : ct->second);
    }
    // In input order, whichever pass found them.
    std::stable_sort(problems_.begin(), problems_.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [at, line] : problems_) result_.problems.push_back(std::move(line));
    return std::move(result_);
  }

 private:
  void problem(size_t at, const std::string& what) { problems_.emplace_back(at, tensors_[at].file + ": " + what); }

  void classify(size_t w, const std::vector<size_t>& scales, const std::vector<size_t>& companions) {
    const TensorRef& weight = tensors_[w];
    const std::string wname = io::quote_name(weight.name);
    if (!companions.empty() && scales.empty()) {
      problem(w, "NVFP4 weight " + wname + " has " + io::quote_name(tensors_[companions[0]].name) +
                     " but no block scale " + io::quote_name(module_of(weight.name) + std::string(kNvfp4BlockScaleSuffix)));
      return;
    }
    if (scales.size() > 1) {
      problem(w, "weight " + wname + " has two scales, " + io::quote_name(tensors_[scales[0]].name) + " and " +
                     io::quote_name(tensors_[scales[1]].name));
      return;
    }
    const TensorRef* scale = scales.empty() ? nullptr : &tensors_[scales[0]];
    if (weight.dtype == DType::F8_E4M3) {
      if (!ends_with(weight.name, kWeightSuffix)) {
        problem(w, "FP8 tensor " + wname + " is not named '<module>.weight', so it has no scale to be read with");
      } else if (!scale) {
        const std::string module = weight.name.substr(0, weight.name.size() - kWeightSuffix.size());
        problem(w, "FP8 weight " + wname + " has no scale (" + io::quote_name(module + std::string(kV4ScaleSuffix)) +
                       " or " + io::quote_name(module + std::string(kV3ScaleSuffix)) + ")");
      } else {
        fp8_block(w, *scale);
      }
      return;
    }
    if (!scale) {
      result_.plain.push_back(weight.name);  // I8/U8 without a scale too: an ordinary integer tensor
      return;
    }
    if (is_packed_fp4_dtype(weight.dtype)) {
      if (ends_with(scale->name, kNvfp4BlockScaleSuffix)) nvfp4(w, *scale, companions);
      else mxfp4(w, *scale);
      return;
    }
    problem(scales[0], "scale " + io::quote_name(scale->name) + " belongs to weight " + wname + " (" +
                           described(weight) + "), which is neither FP8 (F8_E4M3) nor packed FP4 (I8/U8)");
  }

  void fp8_block(size_t w, const TensorRef& scale) {
    const TensorRef& weight = tensors_[w];
    if (weight.shape.size() != 2) {
      problem(w, "FP8 weight " + io::quote_name(weight.name) + " is " + described(weight) + ", not a matrix");
      return;
    }
    const int64_t block = static_cast<int64_t>(kFp8BlockSize);
    const std::vector<int64_t> want = {ceil_div(weight.shape[0], block), ceil_div(weight.shape[1], block)};
    const bool dtype_ok = scale.dtype == DType::F8_E8M0 || scale.dtype == DType::F32;
    if (!dtype_ok || scale.shape != want) {
      problem(index_of(scale), "scale " + io::quote_name(scale.name) + " of FP8 weight " + io::quote_name(weight.name) +
                                   " " + io::shape_string(weight.shape) + " must be F8_E8M0 or F32 " +
                                   io::shape_string(want) + " (one per 128x128 block), is " + described(scale));
      return;
    }
    result_.quantized.push_back({weight.name, scale.name,
                                 scale.dtype == DType::F8_E8M0 ? Storage::Fp8BlockE8M0 : Storage::Fp8BlockF32,
                                 weight.shape, {}});
  }

  void mxfp4(size_t w, const TensorRef& scale) {
    const TensorRef& weight = tensors_[w];
    const std::string wname = io::quote_name(weight.name);
    if (weight.shape.size() != 2) {
      problem(w, "packed FP4 weight " + wname + " is " + described(weight) + ", not a matrix");
      return;
    }
    const int64_t rows = weight.shape[0], cols = 2 * weight.shape[1];
    const int64_t group = static_cast<int64_t>(kMxfp4BlockSize);
    if (cols % group != 0) {
      problem(w, "packed FP4 weight " + wname + " " + io::shape_string(weight.shape) + " holds " +
                     std::to_string(cols) + " values per row, not a multiple of " + std::to_string(group));
      return;
    }
    const std::vector<int64_t> want = {rows, cols / group};
    if (scale.dtype != DType::F8_E8M0 || scale.shape != want) {
      problem(index_of(scale), "scale " + io::quote_name(scale.name) + " of packed FP4 weight " + wname + " " +
                                   io::shape_string(weight.shape) + " must be F8_E8M0 " + io::shape_string(want) +
                                   " (one per 32 values), is " + described(scale));
      return;
    }
    result_.quantized.push_back({weight.name, scale.name, Storage::Mxfp4, {rows, cols}, {}});
  }

  void nvfp4(size_t w, const TensorRef& scale, const std::vector<size_t>& companions) {
    const TensorRef& weight = tensors_[w];
    const std::string wname = io::quote_name(weight.name);
    if (weight.shape.size() != 2 || weight.dtype != DType::U8) {
      problem(w, "NVFP4 weight " + wname + " is " + described(weight) + ", not a U8 matrix");
      return;
    }
    const int64_t rows = weight.shape[0], cols = 2 * weight.shape[1];
    const std::vector<int64_t> want = {rows, cols / 16};
    if (cols % 16 != 0 || scale.dtype != DType::F8_E4M3 || scale.shape != want) {
      problem(index_of(scale), "block scale " + io::quote_name(scale.name) + " of NVFP4 weight " + wname + " " +
                                   io::shape_string(weight.shape) + " must be F8_E4M3 " + io::shape_string(want) +
                                   " (one per 16 values), is " + described(scale));
      return;
    }
    QuantizedWeight q{weight.name, scale.name, Storage::Nvfp4, {rows, cols}, {}};
    bool global = false;
    for (size_t c : companions) {
      const TensorRef& t = tensors_[c];
      const bool scalar = t.dtype == DType::F32 && (t.shape.empty() || t.shape == std::vector<int64_t>{1});
      if (!scalar) {
        problem(c, "per-tensor scale " + io::quote_name(t.name) + " of NVFP4 weight " + wname +
                       " must be an F32 scalar ([] or [1]), is " + described(t));
        return;
      }
      global = global || ends_with(t.name, ".weight_scale_2") || ends_with(t.name, ".weight_global_scale");
      q.companions.push_back(t.name);
    }
    if (!global) {
      problem(w, "NVFP4 weight " + wname + " has no per-tensor scale (" +
                     io::quote_name(module_of(weight.name) + ".weight_scale_2") + " or " +
                     io::quote_name(module_of(weight.name) + ".weight_global_scale") + ")");
      return;
    }
    result_.quantized.push_back(std::move(q));
  }

  static std::string module_of(const std::string& weight) {
    for (std::string_view suffix : {kWeightSuffix, kPackedSuffix})
      if (ends_with(weight, suffix)) return weight.substr(0, weight.size() - suffix.size());
    return weight;
  }

  size_t index_of(const TensorRef& t) const { return static_cast<size_t>(&t - tensors_.data()); }

  const std::vector<TensorRef>& tensors_;
  WeightPairing result_;
  std::vector<std::pair<size_t, std::string>> problems_;  // (tensor index, line)
};

}  // namespace

WeightPairing pair_quantized_weights(const std::vector<TensorRef>& tensors) { return Pairer(tensors).run(); }

}  // namespace fp4kit
