#include "verify/report_json.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "formats/e4m3.h"

namespace fp4kit::verify {

namespace {

nlohmann::json finite_or_null(std::optional<double> v) {
  if (!v || !std::isfinite(*v)) return nullptr;
  return *v;
}

}  // namespace

double e4m3_value(uint8_t byte) { return static_cast<double>(E4M3{byte}.to_float()); }

std::vector<const TensorNumerics*> worst_first(const VerifyReport& r) {
  std::vector<const TensorNumerics*> out;
  for (const TensorNumerics& n : r.numerics) out.push_back(&n);
  std::stable_sort(out.begin(), out.end(), [](const TensorNumerics* a, const TensorNumerics* b) {
    if (a->flag.empty() != b->flag.empty()) return !a->flag.empty();
    const double x = a->sqnr_db.value_or(INFINITY), y = b->sqnr_db.value_or(INFINITY);
    if (x != y) return x < y;
    return a->name < b->name;
  });
  return out;
}

nlohmann::json report_to_json(const VerifyReport& r) {
  nlohmann::json j;
  j["checkpoint"] = r.checkpoint;
  j["source"] = r.source.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.source);
  j["passed"] = r.passed();
  j["failures"] = r.count(Severity::Fail);
  j["warnings"] = r.count(Severity::Warn);
  j["layout"] = r.layout;
  j["producer"] = r.producer;
  j["shards"] = r.shards;
  j["tensors"] = r.tensors;
  j["nvfp4_weights"] = r.nvfp4_weights;
  j["checkpoint_bytes"] = r.checkpoint_bytes;
  j["source_bytes_compared"] = r.source_bytes_compared;
  j["kept"] = r.kept;
  j["kept_identical"] = r.kept_identical;
  j["dequantized"] = r.dequantized;
  j["dequantized_exact"] = r.dequantized_exact;
  j["quantized_accounted"] = r.quantized_accounted;
  j["dropped_accounted"] = r.dropped_accounted;
  j["fail_below_sqnr_db"] = finite_or_null(r.fail_below_sqnr_db);
  j["seconds"] = r.seconds;
  j["threads"] = r.threads;

  nlohmann::json engines = nlohmann::json::array();
  for (const EngineVerdict& e : r.engines)
    engines.push_back({{"engine", e.engine}, {"checked", e.checked}, {"skipped_because", e.reason},
                       {"tensors_consumed", e.tensors_consumed}, {"parameters_filled", e.parameters_filled},
                       {"tensors_skipped", e.tensors_skipped}, {"tensors_skipped_because", e.skipped_why}});
  j["engines"] = engines;

  nlohmann::json findings = nlohmann::json::array();
  for (const Finding& f : r.findings)
    findings.push_back({{"check", f.check}, {"severity", severity_name(f.severity)}, {"tensor", f.tensor}, {"message", f.message}});
  j["findings"] = findings;

  // Summary numbers over the compared tensors.
  size_t compared = 0, exact = 0, flagged = 0;
  std::optional<double> worst;
  uint64_t values = 0, exact_values = 0, nan = 0, inf = 0;
  for (const TensorNumerics& n : r.numerics) {
    values += n.values;
    nan += n.nan_values;
    inf += n.inf_values;
    flagged += !n.flag.empty();
    if (!n.compared) continue;
    ++compared;
    exact_values += n.exact_values;
    if (!n.sqnr_db) ++exact;
    else if (!worst || *n.sqnr_db < *worst) worst = *n.sqnr_db;
  }
  std::map<std::string, size_t> by_method;  // "unknown": no record of the producer's method
  for (const TensorNumerics& n : r.numerics) ++by_method[n.scale_method.empty() ? "unknown" : n.scale_method];
  j["scale_methods"] = by_method;
  j["summary"] = {{"tensors_measured", r.numerics.size()}, {"tensors_compared", compared}, {"tensors_exact", exact},
                  {"tensors_flagged", flagged}, {"worst_sqnr_db", finite_or_null(worst)}, {"values", values},
                  {"exact_values", exact_values}, {"nan_values", nan}, {"inf_values", inf}};

  nlohmann::json tensors = nlohmann::json::array();
  for (const TensorNumerics* n : worst_first(r)) {
    nlohmann::json t = {{"name", n->name}, {"kind", n->kind}, {"layer", n->layer}, {"source_storage", n->source_storage},
                        {"scale_method", n->scale_method.empty() ? nlohmann::json(nullptr) : nlohmann::json(n->scale_method)},
                        {"values", n->values}, {"nan_values", n->nan_values}, {"inf_values", n->inf_values},
                        {"source_nan_values", n->source_nan_values}, {"source_inf_values", n->source_inf_values},
                        {"compared", n->compared}, {"flag", n->flag}};
    if (n->compared) {
      t["sqnr_db"] = finite_or_null(n->sqnr_db);
      t["exact"] = !n->sqnr_db.has_value();
      t["rel_rms"] = std::isfinite(n->rel_rms) ? nlohmann::json(n->rel_rms) : nlohmann::json(nullptr);
      t["max_abs_error"] = n->max_abs_error;
      t["exact_values"] = n->exact_values;
      t["exact_fraction"] = n->exact_fraction();
      t["expected_sqnr_db"] = finite_or_null(n->expected_sqnr_db);
      t["expected_exact"] = n->expected_exact;
      t["lossy_window_values"] = n->lossy_window_values;
    }
    tensors.push_back(std::move(t));
  }
  j["tensors_numerics"] = tensors;

  nlohmann::json hist = nlohmann::json::array();
  for (size_t b = 0; b < 256; ++b)
    if (r.block_scale_histogram[b])
      hist.push_back({{"byte", b}, {"value", e4m3_value(static_cast<uint8_t>(b))}, {"count", r.block_scale_histogram[b]}});
  j["block_scale_histogram"] = hist;
  return j;
}

}  // namespace fp4kit::verify
