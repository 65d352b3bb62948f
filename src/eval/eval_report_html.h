#pragma once
// The self-contained HTML page of `eval` (no network, no files besides itself): the JSON report
// embedded in the page and a script that draws the verdict, the statistics table, the per-layer table
// and four inline SVG plots (KLD histogram, KLD along the worst sequence, per-layer attribution, top-1
// per layer). Every number cell carries data-field and data-value (the JSON value) attributes.
#include <nlohmann/json.hpp>
#include <string>

namespace fp4kit::eval {

std::string eval_report_to_html(const nlohmann::json& report);

}  // namespace fp4kit::eval
