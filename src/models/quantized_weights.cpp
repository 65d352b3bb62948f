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

// The weight a scale belongs to, by name; nullopt if `name` is not a scale name.
std::optional<std::string> weight_of_scale(std::string_view name) {
  for (std::string_view suffix : {kV3ScaleSuffix, kV4ScaleSuffix})
    if (ends_with(name, suffix)) return std::string(name.substr(0, name.size() - suffix.size())) + std::string(kWeightSuffix);
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

    // Every scale finds its weight first, so that each weight then sees all of its scales.
    std::map<size_t, std::vector<size_t>> scales_of;  // weight index -> scale indices
    std::vector<bool> is_scale(tensors_.size(), false);
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const auto weight = weight_of_scale(tensors_[i].name);
      if (!weight) continue;
      is_scale[i] = true;
      const auto it = by_name.find(*weight);
      if (it == by_name.end()) {
        problem(i, "scale " + io::quote_name(tensors_[i].name) + " has no weight " + io::quote_name(*weight));
        continue;
      }
      scales_of[it->second].push_back(i);
    }

    for (size_t i = 0; i < tensors_.size(); ++i) {
      if (is_scale[i]) continue;
      const auto it = scales_of.find(i);
      classify(i, it == scales_of.end() ? std::vector<size_t>{} : it->second);
    }
    // In input order, whichever pass found them.
    std::stable_sort(problems_.begin(), problems_.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [at, line] : problems_) result_.problems.push_back(std::move(line));
    return std::move(result_);
  }

 private:
  void problem(size_t at, const std::string& what) { problems_.emplace_back(at, tensors_[at].file + ": " + what); }

  void classify(size_t w, const std::vector<size_t>& scales) {
    const TensorRef& weight = tensors_[w];
    const std::string wname = io::quote_name(weight.name);
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
      mxfp4(w, *scale);
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
                                 weight.shape});
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
    result_.quantized.push_back({weight.name, scale.name, Storage::Mxfp4, {rows, cols}});
  }

  size_t index_of(const TensorRef& t) const { return static_cast<size_t>(&t - tensors_.data()); }

  const std::vector<TensorRef>& tensors_;
  WeightPairing result_;
  std::vector<std::pair<size_t, std::string>> problems_;  // (tensor index, line)
};

}  // namespace

WeightPairing pair_quantized_weights(const std::vector<TensorRef>& tensors) { return Pairer(tensors).run(); }

}  // namespace fp4kit
