#pragma once
// The terminal summary: what was checked, every failure and warning, the worst tensors first,
// and one PASS/FAIL line.
#include <string>

#include "verify/verify_report.h"

namespace fp4kit::verify {

std::string report_to_text(const VerifyReport&, size_t worst_tensors = 10, size_t max_findings = 50);

// "inf" for an exact tensor, else "%.2f".
std::string format_db(const std::optional<double>& db);

}  // namespace fp4kit::verify
