#include "verify/report_text.h"

#include <cstdio>
#include <map>

#include "verify/report_json.h"

namespace fp4kit::verify {

namespace {

std::string format_number(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

std::string format_db(const std::optional<double>& db) { return db ? format_number("%.2f", *db) : "inf"; }

std::string report_to_text(const VerifyReport& r, size_t worst_tensors, size_t max_findings) {
  std::string s;
  char line[512];
  s += "verify " + r.checkpoint + (r.source.empty() ? "" : "  (source " + r.source + ")") + "\n";
  std::snprintf(line, sizeof line, "  layout %s%s, %zu shards, %zu tensors, %zu NVFP4 weights, %.3f GB\n", r.layout.c_str(),
                r.producer.empty() ? "" : (" (" + r.producer + ")").c_str(), r.shards, r.tensors, r.nvfp4_weights,
                static_cast<double>(r.checkpoint_bytes) / 1e9);
  s += line;
  if (!r.source.empty()) {
    std::snprintf(line, sizeof line, "  source accounted: %zu quantized, %zu kept (%zu bit-identical), %zu scales dropped\n",
                  r.quantized_accounted, r.kept, r.kept_identical, r.dropped_accounted);
    s += line;
    if (r.dequantized) {
      std::snprintf(line, sizeof line, "  FP8 blocks written as BF16: %zu (%zu equal to the official dequant)\n", r.dequantized,
                    r.dequantized_exact);
      s += line;
    }
  }

  const auto worst = worst_first(r);
  size_t compared = 0, exact = 0;
  for (const TensorNumerics& n : r.numerics) {
    compared += n.compared;
    exact += n.compared && !n.sqnr_db;
  }
  if (!r.numerics.empty()) {
    if (compared) {
      std::snprintf(line, sizeof line, "\nnumerics: %zu tensors against the source, %zu exact; worst first:\n", compared, exact);
      s += line;
      std::snprintf(line, sizeof line, "  %9s %9s %10s %11s %8s  %s\n", "SQNR dB", "expect", "rel RMS", "max |err|", "exact", "tensor");
      s += line;
      for (size_t i = 0; i < worst.size() && i < worst_tensors; ++i) {
        const TensorNumerics& n = *worst[i];
        if (!n.compared) continue;
        std::snprintf(line, sizeof line, "  %9s %9s %10.3e %11.3e %7.3f%%  %s%s\n", format_db(n.sqnr_db).c_str(),
                      n.expected_sqnr_db || n.compared ? format_db(n.expected_sqnr_db).c_str() : "-", n.rel_rms,
                      n.max_abs_error, 100.0 * n.exact_fraction(), n.name.c_str(), n.flag.empty() ? "" : ("  <- " + n.flag).c_str());
        s += line;
      }
    } else {
      std::snprintf(line, sizeof line, "\nnumerics: %zu NVFP4 weights scanned (no --source: scales and NaN/Inf only)\n",
                    r.numerics.size());
      s += line;
    }
  }

  for (const EngineVerdict& e : r.engines) {
    if (e.checked)
      std::snprintf(line, sizeof line, "  engine %-7s loader contract walked: %zu tensors consumed, %zu parameters filled, %zu skipped by its loader\n",
                    e.engine.c_str(), e.tensors_consumed, e.parameters_filled, e.tensors_skipped);
    else
      std::snprintf(line, sizeof line, "  engine %-7s skipped: %.400s\n", e.engine.c_str(), e.reason.c_str());
    s += line;
  }

  const size_t fails = r.count(Severity::Fail), warns = r.count(Severity::Warn);
  if (fails + warns) {
    std::snprintf(line, sizeof line, "\n%zu failed checks, %zu warnings:\n", fails, warns);
    s += line;
    size_t shown = 0;
    for (Severity sev : {Severity::Fail, Severity::Warn})
      for (const Finding& f : r.findings) {
        if (f.severity != sev) continue;
        if (shown++ == max_findings) {
          s += "  ... (every finding is in --json)\n";
          break;
        }
        s += std::string("  ") + (sev == Severity::Fail ? "FAIL " : "warn ") + "[" + f.check + "] " + f.message + "\n";
      }
  }
  std::snprintf(line, sizeof line, "\n%s: %zu failed checks, %zu warnings, %zu NVFP4 weights (%.2f s)\n",
                r.passed() ? "PASS" : "FAIL", fails, warns, r.nvfp4_weights, r.seconds);
  s += line;
  return s;
}

}  // namespace fp4kit::verify
