#include "eval/eval_report_json.h"

namespace fp4kit::eval {

namespace {

// The KL and top-1 of a branch whose logits were not scored are null, not 0.
nlohmann::json branch_score(const BranchScore& b) {
  const auto scored = [&b](double v) { return b.logits_scored ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"residual_rel_error", b.residual_rel_error},
          {"logits_scored", b.logits_scored},
          {"kld_mean", scored(b.kld_mean)},
          {"kld_max", scored(b.kld_max)},
          {"top1", scored(b.top1)}};
}

nlohmann::json value_error(const MeanError& m) { return {{"value", m.mean}, {"error", m.error}}; }

nlohmann::json percentile_list(const std::vector<Percentile>& ps) {
  nlohmann::json a = nlohmann::json::array();
  for (const Percentile& p : ps) a.push_back({{"fraction", p.fraction}, {"value", p.value}});
  return a;
}

nlohmann::json statistics(const KlStatistics& s) {
  return {{"positions", s.positions},
          {"ppl_q", value_error(s.ppl_q)},
          {"ppl_base", value_error(s.ppl_base)},
          {"cor_ln_ppl", s.cor_ln_ppl},
          {"ln_ppl_ratio", value_error(s.ln_ppl_ratio)},
          {"ppl_ratio", value_error(s.ppl_ratio)},
          {"ppl_diff", value_error(s.ppl_diff)},
          {"kld",
           {{"mean", s.kld.mean},
            {"error", s.kld.error},
            {"min", s.kld_min},
            {"max", s.kld_max},
            {"median", s.kld_median},
            {"percentiles", percentile_list(s.kld_percentiles)}}},
          {"p_diff",
           {{"mean", s.p_diff.mean},
            {"error", s.p_diff.error},
            {"min", s.p_diff_min},
            {"max", s.p_diff_max},
            {"median", s.p_diff_median},
            {"percentiles", percentile_list(s.p_diff_percentiles)},
            {"rms", value_error(s.p_diff_rms)}}},
          {"top1", {{"value", s.top1.mean}, {"error", s.top1.error}, {"agree", s.top1_agree}}}};
}

nlohmann::json positions(const std::vector<PositionScore>& ps) {
  nlohmann::json seq = nlohmann::json::array(), pos = nlohmann::json::array(), kld = nlohmann::json::array(),
                 nb = nlohmann::json::array(), nq = nlohmann::json::array(), pd = nlohmann::json::array(),
                 top = nlohmann::json::array();
  for (const PositionScore& p : ps) {
    seq.push_back(p.sequence);
    pos.push_back(p.position);
    kld.push_back(p.kld);
    nb.push_back(p.nll_base);
    nq.push_back(p.nll_q);
    pd.push_back(p.p_diff);
    top.push_back(p.same_top);
  }
  return {{"sequence", seq}, {"position", pos}, {"kld", kld},     {"nll_base", nb},
          {"nll_q", nq},     {"p_diff", pd},    {"same_top", top}};
}

}  // namespace

nlohmann::json eval_report_to_json(const EvalResult& r, const EvalOptions& o, const EvalInputs& in, const Thresholds& t,
                                   const Judgement& j) {
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerAttribution& a : r.attribution) {
    nlohmann::json kinds = nlohmann::json::array();
    for (const KindAttribution& k : a.kinds) {
      nlohmann::json kind = branch_score(k);
      kind["kind"] = k.kind;
      kinds.push_back(kind);
    }
    nlohmann::json layer = branch_score(a);
    layer["layer"] = a.layer;
    layer["kinds"] = kinds;
    layers.push_back(layer);
  }
  nlohmann::json report = {
      {"quantized", o.quantized},
      {"base", o.base},
      {"data", in.data},
      {"samples", r.batch},
      {"seq_len", r.seq},
      {"tokens", r.tokens()},
      {"vocab_size", r.vocab},
      {"layers", r.layers},
      {"scored_positions", "every token but the last of each sequence"},
      {"base_model_fingerprint", r.base_fingerprint},
      {"base_logits_file", in.base_logits_file.empty() ? nlohmann::json(nullptr) : nlohmann::json(in.base_logits_file)},
      {"base_logits_from_file", r.base_logits_from_file},
      {"seconds", r.seconds},
      {"tokens_per_second", r.seconds > 0 ? static_cast<double>(r.tokens()) / r.seconds : 0.0},
      {"thresholds", {{"max_kld", t.max_kld}, {"min_top1", t.min_top1}}},
      {"verdict", verdict_name(j.verdict)},
      {"reasons", j.reasons},
      {"statistics", statistics(r.stats)},
      {"attribution", layers},
      {"positions", positions(r.positions)}};
  report["worst_position"] = j.worst_position ? nlohmann::json{{"sequence", j.worst_position->sequence},
                                                               {"position", j.worst_position->position},
                                                               {"kld", j.worst_position->kld}}
                                              : nlohmann::json(nullptr);
  report["worst_layer"] = j.worst_layer ? nlohmann::json(j.worst_layer->layer) : nlohmann::json(nullptr);
  report["worst_layer_kind"] = j.worst_kind ? nlohmann::json(j.worst_kind->kind) : nlohmann::json(nullptr);
  return report;
}

}  // namespace fp4kit::eval
