#include "eval/evaluate.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "engine/engine.h"
#include "engine/logit_compare.h"
#include "eval/base_logits_file.h"
#include "eval/model_fingerprint.h"

namespace fp4kit::eval {

namespace {

std::string model_type(const std::string& dir) {
  std::ifstream in(dir + "/config.json");
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  return j.is_object() && j.contains("model_type") && j["model_type"].is_string() ? j["model_type"].get<std::string>()
                                                                                  : std::string("(none)");
}

// The quantized checkpoint must be a conversion of the base: same architecture and shapes.
void require_same_architecture(const engine::ModelConfig& base, const engine::ModelConfig& q, const EvalOptions& o) {
  const auto& a = base.base;
  const auto& b = q.base;
  const auto differ = [&](const char* what, auto x, auto y) {
    if (x != y)
      throw InputError(o.quantized + ": " + what + " " + std::to_string(y) + " differs from the base " + o.base +
                       "'s " + std::to_string(x) + ": not a conversion of this model");
  };
  differ("vocab_size", a.vocab_size, b.vocab_size);
  differ("num_hidden_layers", a.num_hidden_layers, b.num_hidden_layers);
  differ("hidden_size", a.hidden_size, b.hidden_size);
  differ("hc_mult", a.hc_mult, b.hc_mult);
  differ("num_attention_heads", a.num_attention_heads, b.num_attention_heads);
  differ("head_dim", a.head_dim, b.head_dim);
  differ("n_routed_experts", a.n_routed_experts, b.n_routed_experts);
  differ("num_experts_per_tok", a.num_experts_per_tok, b.num_experts_per_tok);
  differ("moe_intermediate_size", a.moe_intermediate_size, b.moe_intermediate_size);
  if (a.compress_ratios != b.compress_ratios)
    throw InputError(o.quantized + ": compress_ratios differ from the base " + o.base +
                     "'s: not a conversion of this model");
}

double relative_error(const std::vector<float>& x, const std::vector<float>& ref) {
  double d2 = 0, r2 = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - ref[i];
    d2 += d * d;
    r2 += static_cast<double>(ref[i]) * ref[i];
  }
  return r2 > 0 ? std::sqrt(d2 / r2) : std::sqrt(d2);
}

// KL and top-1 of a branch's logits against the base's, over the scored positions (all but each
// sequence's last token, as the statistics).
void score_branch(BranchScore& a, const std::string& what, const std::vector<float>& base,
                  const std::vector<float>& branch, int64_t batch, int64_t seq, int64_t vocab) {
  require_finite_logits(branch, seq, vocab, what);
  int64_t n = 0, agree = 0;
  double sum = 0;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t p = 0; p + 1 < seq; ++p) {
      const size_t at = static_cast<size_t>((b * seq + p) * vocab);
      const engine::PositionDiff d = engine::compare_logit_row(&base[at], &branch[at], vocab);
      sum += d.kl;
      a.kld_max = n == 0 ? d.kl : std::max(a.kld_max, d.kl);
      agree += d.top_a == d.top_b;
      ++n;
    }
  a.kld_mean = n ? sum / static_cast<double>(n) : 0.0;
  a.top1 = n ? static_cast<double>(agree) / static_cast<double>(n) : 0.0;
}

// The base model with some of its weights from the quantized checkpoint, from layer `layer` on.
struct Branch {
  int64_t layer = 0;
  int kind = -1;  // index into kWeightKinds; -1: the whole layer
  engine::ForwardState state;
};

}  // namespace

void require_same_model_type(const std::string& quantized, const std::string& base) {
  if (const std::string tb = model_type(base), tq = model_type(quantized); tb != tq)
    throw InputError(quantized + ": model_type " + tq + ", the base " + base + " is " + tb +
                     ": not a conversion of this model");
}

namespace {

// The two models through LayerRunners (the GPU engine for --device cuda), their hidden states side
// by side so that each layer's weights are read once per model. The attribution here is each layer's
// residual error: the quantized layer run again on the base stream entering it (rerun_layer), against
// the base layer's output. The logits of "only this layer quantized" would need every later base
// layer once per branch (O(layers^2) reads of a checkpoint that streams), so they are not scored.
EvalResult evaluate_with_runner(const EvalOptions& o, const std::vector<int64_t>& ids, int64_t batch, EvalResult r,
                                const EvalProgress& progress, std::chrono::steady_clock::time_point t0) {
  engine::EngineOptions eo;
  eo.threads = o.threads;
  const engine::ModelConfig base_cfg = engine::ModelConfig::load(o.base);
  {
    const engine::ModelConfig q_cfg = engine::ModelConfig::load(o.quantized);
    require_same_architecture(base_cfg, q_cfg, o);
  }
  r.vocab = base_cfg.base.vocab_size;
  r.layers = base_cfg.layers();
  r.base_fingerprint = model_fingerprint(o.base);
  const bool base_from_file = !o.base_logits.empty();
  std::vector<float> base_logits;
  if (base_from_file) {
    r.base_logits_from_file = true;
    base_logits = read_base_logits(o.base_logits, r.base_fingerprint, ids, batch, r.vocab).logits;
  }
  const std::unique_ptr<engine::LayerRunner> q = o.runner(o.quantized, eo);
  const std::unique_ptr<engine::LayerRunner> b = base_from_file ? nullptr : o.runner(o.base, eo);
  const bool attribute = o.attribution && b;
  q->embed(ids, batch);
  if (b) b->embed(ids, batch);
  if (attribute) r.attribution.resize(static_cast<size_t>(r.layers));
  for (int64_t l = 0; l < r.layers; ++l) {
    std::vector<float> entering;
    if (attribute) entering = b->hidden();
    if (b) b->run_layer(l);
    q->run_layer(l);
    if (attribute) {
      q->rerun_layer(l, entering);
      LayerAttribution& a = r.attribution[static_cast<size_t>(l)];
      a.layer = l;
      a.logits_scored = false;
      a.residual_rel_error = relative_error(entering, b->hidden());
    }
    if (progress) progress(l + 1, r.layers);
  }
  if (b) {
    base_logits = b->head();
    require_finite_logits(base_logits, r.seq, r.vocab, "base model");
    if (!o.save_base_logits.empty())
      write_base_logits(o.save_base_logits, {base_logits, ids, r.batch, r.seq, r.vocab, r.base_fingerprint}, o.save_dtype);
  }
  const std::vector<float> q_logits = q->head();
  r.positions = score_positions(base_logits, q_logits, ids, batch, r.vocab);
  r.stats = summarize(r.positions);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace

EvalResult evaluate(const EvalOptions& o, const std::vector<int64_t>& ids, int64_t batch,
                    const EvalProgress& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  if (batch <= 0 || ids.empty() || ids.size() % static_cast<size_t>(batch) != 0)
    throw InputError("eval: no token ids to evaluate");
  EvalResult r;
  r.batch = batch;
  r.seq = static_cast<int64_t>(ids.size()) / batch;
  if (r.seq < 2)
    throw InputError("eval: sequences of " + std::to_string(r.seq) + " token(s): at least 2 are needed to score one");
  engine::EngineOptions eo;
  eo.threads = o.threads;
  require_same_model_type(o.quantized, o.base);
  if (o.runner) return evaluate_with_runner(o, ids, batch, r, progress, t0);
  const engine::ModelConfig base_cfg = engine::ModelConfig::load(o.base);
  engine::Engine q(o.quantized, eo);
  require_same_architecture(base_cfg, q.config(), o);
  r.vocab = base_cfg.base.vocab_size;
  r.layers = base_cfg.layers();
  r.base_fingerprint = model_fingerprint(o.base);

  std::vector<float> base_logits;
  engine::ForwardState sq = q.embed(ids, batch);
  if (!o.base_logits.empty()) {
    r.base_logits_from_file = true;
    base_logits = read_base_logits(o.base_logits, r.base_fingerprint, ids, batch, r.vocab).logits;
    for (int64_t l = 0; l < r.layers; ++l) {
      q.run_layer(l, sq);
      if (progress) progress(l + 1, r.layers);
    }
  } else {
    engine::Engine eb(o.base, eo);
    std::vector<std::unique_ptr<engine::Engine>> kind_engines;  // base weights but one kind from QUANTIZED
    if (o.attribution)
      for (const WeightKind& k : kWeightKinds)
        kind_engines.push_back(
            std::make_unique<engine::Engine>(o.base, eo, engine::WeightOverlay{o.quantized, {k.marker}}));
    engine::ForwardState sb = eb.embed(ids, batch);
    std::vector<Branch> branches;
    if (o.attribution) r.attribution.resize(static_cast<size_t>(r.layers));
    for (int64_t l = 0; l < r.layers; ++l) {
      const size_t started = branches.size();
      if (o.attribution) {
        branches.push_back({l, -1, sb});
        q.run_layer(l, branches.back().state);
        for (size_t k = 0; k < kind_engines.size(); ++k) {
          branches.push_back({l, static_cast<int>(k), sb});
          kind_engines[k]->run_layer(l, branches.back().state);
        }
      }
      eb.run_layer(l, sb);
      for (size_t b = 0; b < started; ++b) eb.run_layer(l, branches[b].state);
      if (o.attribution) {
        LayerAttribution& a = r.attribution[static_cast<size_t>(l)];
        a.layer = l;
        a.kinds.resize(kind_engines.size());
        for (size_t b = started; b < branches.size(); ++b) {
          const double e = relative_error(branches[b].state.hidden, sb.hidden);
          if (branches[b].kind < 0)
            a.residual_rel_error = e;
          else
            a.kinds[static_cast<size_t>(branches[b].kind)].residual_rel_error = e;
        }
      }
      q.run_layer(l, sq);
      if (progress) progress(l + 1, r.layers);
    }
    base_logits = eb.head(sb);
    require_finite_logits(base_logits, r.seq, r.vocab, "base model");
    for (Branch& b : branches) {
      const std::vector<float> logits = eb.head(b.state);
      b.state = {};  // its memory is no longer needed
      LayerAttribution& a = r.attribution[static_cast<size_t>(b.layer)];
      const std::string what = "base model with " + std::string(b.kind < 0 ? "layer" : kWeightKinds[b.kind].name) +
                               (b.kind < 0 ? " " : " of layer ") + std::to_string(b.layer) + " quantized";
      if (b.kind < 0) {
        score_branch(a, what, base_logits, logits, batch, r.seq, r.vocab);
      } else {
        KindAttribution& k = a.kinds[static_cast<size_t>(b.kind)];
        k.kind = kWeightKinds[b.kind].name;
        score_branch(k, what, base_logits, logits, batch, r.seq, r.vocab);
      }
    }
    if (!o.save_base_logits.empty())
      write_base_logits(o.save_base_logits, {base_logits, ids, r.batch, r.seq, r.vocab, r.base_fingerprint},
                        o.save_dtype);
  }
  const std::vector<float> q_logits = q.head(sq);
  r.positions = score_positions(base_logits, q_logits, ids, batch, r.vocab);
  r.stats = summarize(r.positions);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace fp4kit::eval
