#pragma once
// The verify report as JSON: every finding and every number (`--json FILE`, and the data the HTML
// page draws from). Infinite SQNR (an exact tensor) is null with "exact": true.
#include <nlohmann/json.hpp>

#include "verify/verify_report.h"

namespace fp4kit::verify {

nlohmann::json report_to_json(const VerifyReport&);

// The tensors ordered worst first: flagged ones, then by SQNR ascending (exact last), then by name.
std::vector<const TensorNumerics*> worst_first(const VerifyReport&);

// The E4M3 value of a block scale byte (for the histogram's labels).
double e4m3_value(uint8_t byte);

}  // namespace fp4kit::verify
