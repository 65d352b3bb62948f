#include "calib/amax_observer.h"

#include <cmath>
#include <limits>

namespace fp4kit {

namespace {
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }
}  // namespace

std::string_view w2_input_name(W2Input w) { return w == W2Input::Weighted ? "weighted" : "unweighted"; }

bool is_calibrated_module(std::string_view m) {
  if (contains(m, ".ffn.experts.") || contains(m, ".ffn.shared_experts.")) return true;
  if (contains(m, ".attn.compressor.") || contains(m, ".indexer.compressor.") || ends_with(m, ".weights_proj"))
    return false;
  if (ends_with(m, ".attn.indexer.wq_b")) return true;
  for (std::string_view p : {".attn.wq_a", ".attn.wq_b", ".attn.wkv", ".attn.wo_a", ".attn.wo_b"})
    if (ends_with(m, p)) return true;
  return false;
}

bool w2_rows_weighted(std::string_view m, W2Input w2) {
  return w2 == W2Input::Weighted && contains(m, ".ffn.experts.") && ends_with(m, ".w2");
}

void AmaxObserver::on_linear_input(const engine::LinearInput& in) {
  const std::string name(in.name);
  if (!is_calibrated_module(name)) return;
  const size_t cols = static_cast<size_t>(in.cols);
  const bool routed_expert = contains(name, ".ffn.experts.");
  if (routed_expert && ends_with(name, ".w1")) expert_rows_[name.substr(0, name.size() - 3)] += in.rows;
  if (w2_rows_weighted(name, w2_)) {
    // max |w * h| row by row: w >= 0 and rounding is monotone, so fl(w * max|h|) is the row's max.
    float m = 0.0f;
    bool nan = false;
    for (int64_t r = 0; r < in.rows; ++r) {
      const float w = in.routing_weights.empty() ? 1.0f : in.routing_weights[static_cast<size_t>(r)];
      const float v = std::fabs(w * max_abs(in.x + static_cast<size_t>(r) * cols, cols));
      nan |= std::isnan(v);
      m = v > m ? v : m;
    }
    table_.merge(name, nan ? std::numeric_limits<float>::quiet_NaN() : m);
    return;
  }
  table_.observe(name, in.x, static_cast<size_t>(in.rows) * cols);
}

void AmaxObserver::on_linear_amax(const engine::LinearAmax& in) {
  const std::string name(in.name);
  if (!is_calibrated_module(name)) return;
  const bool routed_expert = contains(name, ".ffn.experts.");
  if (routed_expert && ends_with(name, ".w1")) expert_rows_[name.substr(0, name.size() - 3)] += in.rows;
  if (in.rows > 0) table_.merge(name, w2_rows_weighted(name, w2_) ? in.weighted_amax : in.amax);
}

}  // namespace fp4kit
