#include "verify/verify_report.h"

#include <algorithm>

namespace fp4kit::verify {

std::string_view severity_name(Severity s) { return s == Severity::Fail ? "fail" : "warn"; }

size_t VerifyReport::count(Severity s) const {
  return static_cast<size_t>(std::count_if(findings.begin(), findings.end(), [s](const Finding& f) { return f.severity == s; }));
}

void VerifyReport::add(std::string check, Severity severity, std::string tensor, std::string message) {
  findings.push_back({std::move(check), severity, std::move(tensor), std::move(message)});
}

}  // namespace fp4kit::verify
