#include "engine/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "base/error.h"
#include "base/parallel.h"
#include "engine/matmul.h"
#include "engine/ops.h"

namespace fp4kit::engine {

MoeWeights load_moe_weights(WeightStore& st, const ModelConfig& cfg, int64_t layer) {
  const auto& b = cfg.base;
  const std::string p = "layers." + std::to_string(layer) + ".ffn.";
  const int64_t H = b.hidden_size, E = b.n_routed_experts, k = b.num_experts_per_tok;
  MoeWeights w;
  w.gate = st.get(p + "gate.weight", {E, H});
  if (cfg.hash_routed[layer]) {
    const std::string name = p + "gate.tid2eid";
    w.tid2eid = st.get_i64(name, {b.vocab_size, k});
    for (int64_t e : w.tid2eid)
      if (e < 0 || e >= E)
        throw InputError(st.dir() + ": tensor '" + name + "' holds expert " + std::to_string(e) + ", outside [0, " +
                         std::to_string(E) + ")");
  } else {
    w.bias = st.get(p + "gate.bias", {E});
  }
  w.shared_inter = b.moe_intermediate_size * b.n_shared_experts;
  if (w.shared_inter > 0) {
    w.shared_w1 = st.get(p + "shared_experts.w1.weight", {w.shared_inter, H});
    w.shared_w3 = st.get(p + "shared_experts.w3.weight", {w.shared_inter, H});
    w.shared_w2 = st.get(p + "shared_experts.w2.weight", {H, w.shared_inter});
  }
  return w;
}

namespace {

void observe(const MoeContext& ctx, const std::string& name, const float* x, int64_t rows, int64_t cols,
             const std::vector<int64_t>& tokens, const std::vector<float>& weights) {
  if (ctx.observer) ctx.observer->on_linear_input({name, x, rows, cols, tokens, weights});
}

// h [n, I] = silu(min(x w1^T, limit)) * clamp(x w3^T, -limit, limit), showing x to the observer.
std::vector<float> swiglu_hidden(const MoeContext& ctx, const std::string& prefix, const float* x, int64_t n,
                                 int64_t H, int64_t I, const float* w1, const float* w3,
                                 const std::vector<int64_t>& tokens) {
  observe(ctx, prefix + "w1", x, n, H, tokens, {});
  observe(ctx, prefix + "w3", x, n, H, tokens, {});
  std::vector<float> g(static_cast<size_t>(n * I)), u(static_cast<size_t>(n * I));
  matmul(x, w1, g.data(), static_cast<size_t>(n), static_cast<size_t>(I), static_cast<size_t>(H), ctx.threads);
  matmul(x, w3, u.data(), static_cast<size_t>(n), static_cast<size_t>(I), static_cast<size_t>(H), ctx.threads);
  const float limit = ctx.cfg->swiglu_limit;
  for (size_t i = 0; i < g.size(); ++i) {
    float gi = g[i], ui = u[i];
    if (limit > 0) {
      gi = std::min(gi, limit);
      ui = std::clamp(ui, -limit, limit);
    }
    g[i] = silu(gi) * ui;
  }
  return g;
}

}  // namespace

Routing route_scores(const float* score, int64_t T, int64_t E, int64_t k, const float* bias, const int64_t* tid2eid,
                     const int64_t* ids, float rho) {
  Routing routing;
  routing.experts.resize(static_cast<size_t>(T * k));
  routing.weights.resize(static_cast<size_t>(T * k));
  std::vector<int64_t> order(static_cast<size_t>(E)), chosen(static_cast<size_t>(k));
  std::vector<float> biased(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    const float* s = &score[t * E];
    if (tid2eid) {
      std::copy_n(&tid2eid[ids[t] * k], k, chosen.begin());
    } else {
      // NaN (a NaN score or bias) as -inf: the comparison below is then a total order.
      for (int64_t e = 0; e < E; ++e) {
        const float v = s[e] + bias[e];
        biased[e] = std::isnan(v) ? -INFINITY : v;
      }
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t c) {
        return biased[a] > biased[c] || (biased[a] == biased[c] && a < c);
      });
      std::copy_n(order.begin(), k, chosen.begin());
    }
    float sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += s[chosen[j]];
    std::vector<std::pair<int64_t, float>> pairs;
    for (int64_t j = 0; j < k; ++j) pairs.emplace_back(chosen[j], s[chosen[j]] / (sum + 1e-20f) * rho);
    std::sort(pairs.begin(), pairs.end());
    for (int64_t j = 0; j < k; ++j) {
      routing.experts[t * k + j] = pairs[j].first;
      routing.weights[t * k + j] = pairs[j].second;
    }
  }
  return routing;
}

Routing moe_forward(const MoeContext& ctx, WeightStore& store, const MoeWeights& w, const float* x,
                    const int64_t* ids, int64_t T, float* out) {
  const ModelConfig& cfg = *ctx.cfg;
  const auto& b = cfg.base;
  const int64_t H = b.hidden_size, E = b.n_routed_experts, k = b.num_experts_per_tok, I = b.moe_intermediate_size;
  const std::string prefix = "layers." + std::to_string(ctx.layer) + ".ffn.";

  // Router.
  observe(ctx, prefix + "gate", x, T, H, {}, {});
  std::vector<float> score(static_cast<size_t>(T * E));
  matmul(x, w.gate->data(), score.data(), static_cast<size_t>(T), static_cast<size_t>(E), static_cast<size_t>(H), ctx.threads);
  for (float& s : score) s = std::sqrt(softplus(s));
  const Routing routing = route_scores(score.data(), T, E, k, w.tid2eid.empty() ? w.bias->data() : nullptr,
                                       w.tid2eid.empty() ? nullptr : w.tid2eid.data(), ids,
                                       static_cast<float>(b.routed_scaling_factor));

  // Routed experts, one at a time in increasing id (one expert's weights resident at a time).
  std::vector<std::vector<int64_t>> rows_of(static_cast<size_t>(E));
  std::vector<std::vector<float>> weight_of(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) {
      rows_of[routing.experts[t * k + j]].push_back(t);
      weight_of[routing.experts[t * k + j]].push_back(routing.weights[t * k + j]);
    }
  std::vector<float> routed(static_cast<size_t>(T * H), 0.0f);
  std::vector<int64_t> all_tokens;
  if (ctx.observe_all_experts) {
    all_tokens.resize(static_cast<size_t>(T));
    std::iota(all_tokens.begin(), all_tokens.end(), 0);
  }
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int64_t>& rows = rows_of[e];
    if (rows.empty() && !ctx.observe_all_experts) continue;
    const std::string ep = prefix + "experts." + std::to_string(e) + ".";
    const Tensor w1 = store.get(ep + "w1.weight", {I, H});
    const Tensor w3 = store.get(ep + "w3.weight", {I, H});
    const Tensor w2 = store.get(ep + "w2.weight", {H, I});
    const int64_t n = static_cast<int64_t>(rows.size());
    std::vector<float> h;
    if (ctx.observe_all_experts) {
      // Every token through w1/w3 for the observer; the routed rows are then picked from the result
      // (each row's arithmetic is independent of the others, so they equal the routed-only rows).
      const std::vector<float> h_all = swiglu_hidden(ctx, ep, x, T, H, I, w1->data(), w3->data(), all_tokens);
      std::vector<float> all_weights(static_cast<size_t>(T), 0.0f);
      for (int64_t i = 0; i < n; ++i) all_weights[rows[i]] = weight_of[e][i];
      observe(ctx, ep + "w2", h_all.data(), T, I, all_tokens, all_weights);
      h.resize(static_cast<size_t>(n * I));
      for (int64_t i = 0; i < n; ++i) std::copy_n(&h_all[rows[i] * I], I, &h[i * I]);
    } else {
      std::vector<float> xe(static_cast<size_t>(n * H));
      for (int64_t i = 0; i < n; ++i) std::copy_n(x + rows[i] * H, H, &xe[i * H]);
      h = swiglu_hidden(ctx, ep, xe.data(), n, H, I, w1->data(), w3->data(), rows);
      observe(ctx, ep + "w2", h.data(), n, I, rows, weight_of[e]);
    }
    if (n == 0) continue;
    std::vector<float> y(static_cast<size_t>(n * H));
    matmul(h.data(), w2->data(), y.data(), static_cast<size_t>(n), static_cast<size_t>(H), static_cast<size_t>(I), ctx.threads);
    for (int64_t i = 0; i < n; ++i) {
      const float we = weight_of[e][i];
      float* dst = &routed[rows[i] * H];
      for (int64_t d = 0; d < H; ++d) dst[d] += y[i * H + d] * we;
    }
  }

  // Shared expert over every token, then routed + shared.
  if (w.shared_inter > 0) {
    const std::string sp = prefix + "shared_experts.";
    const std::vector<float> h = swiglu_hidden(ctx, sp, x, T, H, w.shared_inter, w.shared_w1->data(), w.shared_w3->data(), {});
    observe(ctx, sp + "w2", h.data(), T, w.shared_inter, {}, {});
    std::vector<float> y(static_cast<size_t>(T * H));
    matmul(h.data(), w.shared_w2->data(), y.data(), static_cast<size_t>(T), static_cast<size_t>(H),
           static_cast<size_t>(w.shared_inter), ctx.threads);
    for (int64_t i = 0; i < T * H; ++i) out[i] = routed[i] + y[i];
  } else {
    std::copy(routed.begin(), routed.end(), out);
  }
  return routing;
}

}  // namespace fp4kit::engine
