#include "eval/eval_verdict.h"

#include <cstdio>

namespace fp4kit::eval {

namespace {

std::string fmt(const char* format, double a, double b) {
  char buf[160];
  std::snprintf(buf, sizeof buf, format, a, b);
  return buf;
}

}  // namespace

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Pass:
      return "PASS";
    case Verdict::Warn:
      return "WARN";
    case Verdict::Fail:
      return "FAIL";
  }
  return "?";
}

Judgement judge(const EvalResult& r, const Thresholds& t) {
  Judgement j;
  for (const PositionScore& p : r.positions)
    if (!j.worst_position || !(p.kld <= j.worst_position->kld)) j.worst_position = &p;
  // The worst layer by the KL it causes alone, or by its residual error where logits were not scored.
  const auto damage = [](const LayerAttribution& a) { return a.logits_scored ? a.kld_mean : a.residual_rel_error; };
  for (const LayerAttribution& a : r.attribution)
    if (!j.worst_layer || !(damage(a) <= damage(*j.worst_layer))) j.worst_layer = &a;
  if (j.worst_layer)
    for (const KindAttribution& k : j.worst_layer->kinds)
      if (k.kld_mean > 0 && (!j.worst_kind || !(k.kld_mean <= j.worst_kind->kld_mean))) j.worst_kind = &k;
  const KlStatistics& s = r.stats;
  if (!(s.kld.mean <= t.max_kld)) j.reasons.push_back(fmt("mean KLD %.6g above --max-kld %.6g", s.kld.mean, t.max_kld));
  if (!(s.top1.mean >= t.min_top1))
    j.reasons.push_back(fmt("top-1 agreement %.4g%% below --min-top1 %.4g%%", 100 * s.top1.mean, 100 * t.min_top1));
  if (!j.reasons.empty()) {
    j.verdict = Verdict::Fail;
    return j;
  }
  if (!(s.kld.mean + 2 * s.kld.error <= t.max_kld))
    j.reasons.push_back(fmt("mean KLD + 2 errors %.6g above --max-kld %.6g", s.kld.mean + 2 * s.kld.error, t.max_kld));
  if (!(s.top1.mean - 2 * s.top1.error >= t.min_top1))
    j.reasons.push_back(fmt("top-1 agreement - 2 errors %.4g%% below --min-top1 %.4g%%",
                            100 * (s.top1.mean - 2 * s.top1.error), 100 * t.min_top1));
  if (j.worst_layer && !(j.worst_layer->kld_mean <= t.max_kld))
    j.reasons.push_back("layer " + std::to_string(j.worst_layer->layer) + " alone quantized " +
                        fmt("causes a mean KLD %.6g above --max-kld %.6g", j.worst_layer->kld_mean, t.max_kld));
  if (!j.reasons.empty()) j.verdict = Verdict::Warn;
  return j;
}

}  // namespace fp4kit::eval
