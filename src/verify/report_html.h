#pragma once
// The verify report as one self-contained HTML page (inline CSS, SVG and JS; no network): the
// verdict, every finding, plots of the error per layer and per tensor kind, a histogram of block
// scales, and the worst tensors. The numbers are drawn by the page's script from the embedded JSON
// report, so the page shows exactly what --json holds.
#include <string>

#include <nlohmann/json.hpp>

namespace fp4kit::verify {

// `report` is report_to_json's output.
std::string report_to_html(const nlohmann::json& report);

}  // namespace fp4kit::verify
