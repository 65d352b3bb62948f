#pragma once
// PASS / WARN / FAIL of an evaluation against the user's thresholds:
//   FAIL  mean KLD above --max-kld, or top-1 agreement below --min-top1
//   WARN  both hold, but not with confidence: mean KLD + 2 errors above --max-kld, or top-1 - 2 errors
//         below --min-top1 (more positions would settle it), or one layer alone quantized already
//         causes a mean KLD above --max-kld
//   PASS  otherwise
// Every comparison is written so that a NaN fails.
#include <string>
#include <vector>

#include "eval/evaluate.h"

namespace fp4kit::eval {

struct Thresholds {
  double max_kld = 0.05;   // nats, mean over the scored positions
  double min_top1 = 0.90;  // fraction
};

enum class Verdict { Pass, Warn, Fail };
const char* verdict_name(Verdict v);

struct Judgement {
  Verdict verdict = Verdict::Pass;
  std::vector<std::string> reasons;               // one sentence each; empty for PASS
  const PositionScore* worst_position = nullptr;  // highest KLD
  const LayerAttribution* worst_layer = nullptr;  // highest KLD when alone quantized (if attributed)
  const KindAttribution* worst_kind = nullptr;    // of worst_layer's kinds, the highest KLD (if above 0)
};

// The judgement points into `result`, which must outlive it.
Judgement judge(const EvalResult& result, const Thresholds& thresholds);

}  // namespace fp4kit::eval
