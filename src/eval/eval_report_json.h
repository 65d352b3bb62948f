#pragma once
// The JSON report of `eval`: every number of the evaluation (statistics, each scored position,
// per-layer attribution), the inputs and the verdict. docs/eval.md lists the fields. The HTML report
// is rendered from this document.
#include <nlohmann/json.hpp>
#include <string>

#include "eval/eval_verdict.h"
#include "eval/evaluate.h"

namespace fp4kit::eval {

struct EvalInputs {
  std::string data;              // where the token ids came from
  std::string base_logits_file;  // read (--base-logits) or written (--save-base-logits), "" if neither
};

nlohmann::json eval_report_to_json(const EvalResult& result, const EvalOptions& options, const EvalInputs& inputs,
                                   const Thresholds& thresholds, const Judgement& judgement);

}  // namespace fp4kit::eval
