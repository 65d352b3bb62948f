#include "engine/engine.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "base/error.h"
#include "base/parallel.h"
#include "engine/hyper_connection.h"
#include "engine/matmul.h"
#include "engine/ops.h"

namespace fp4kit::engine {

namespace {
unsigned resolve_threads(unsigned t) { return t == 0 ? default_threads() : t; }
}  // namespace

Engine::Engine(const std::string& model_dir, EngineOptions options, const WeightOverlay& overlay)
    : cfg_(ModelConfig::load(model_dir)),
      options_([&] {
        options.threads = resolve_threads(options.threads);
        return options;
      }()),
      store_(model_dir, options_.weight_cache_bytes, overlay),
      main_rope_(cfg_.rope_dim, cfg_.rope_theta, YarnParams{}),
      compress_rope_(cfg_.rope_dim, cfg_.compress_rope_theta, cfg_.yarn) {}

void Engine::fill_embeddings(ForwardState& s) {
  const int64_t H = cfg_.hidden(), hc = cfg_.hc(), V = cfg_.base.vocab_size, T = s.tokens();
  for (int64_t i = 0; i < T; ++i)
    if (s.ids[i] < 0 || s.ids[i] >= V)
      throw InputError("token id " + std::to_string(s.ids[i]) + " (sequence " + std::to_string(i / s.seq) + ", position " +
                       std::to_string(i % s.seq) + ") is outside the vocabulary of " + dir() + " (vocab_size " +
                       std::to_string(V) + ")");
  s.hidden.assign(static_cast<size_t>(T * hc * H), 0.0f);
  for (int64_t i = 0; i < T; ++i) {
    const std::vector<float> row = store_.rows("embed.weight", V, H, static_cast<size_t>(s.ids[i]), static_cast<size_t>(s.ids[i] + 1));
    for (int64_t j = 0; j < hc; ++j) std::copy(row.begin(), row.end(), &s.hidden[(i * hc + j) * H]);
  }
  check_finite(s, "the token embedding");
}

ForwardState Engine::embed(const std::vector<int64_t>& ids, int64_t batch) {
  if (batch < 1 || ids.empty() || ids.size() % static_cast<size_t>(batch) != 0)
    throw InputError("token ids: " + std::to_string(ids.size()) + " ids do not form " + std::to_string(batch) +
                     " sequences of equal, non-zero length");
  ForwardState s;
  s.batch = batch;
  s.seq = static_cast<int64_t>(ids.size()) / batch;
  s.ids = ids;
  s.sequences.resize(static_cast<size_t>(batch));
  for (auto& q : s.sequences) q.layers.resize(static_cast<size_t>(cfg_.layers()));
  s.routing.resize(static_cast<size_t>(cfg_.layers()));
  fill_embeddings(s);
  return s;
}

void Engine::embed_next(ForwardState& s, const std::vector<int64_t>& ids) {
  if (ids.empty() || ids.size() % static_cast<size_t>(s.batch) != 0)
    throw InputError("token ids: " + std::to_string(ids.size()) + " ids do not continue " + std::to_string(s.batch) +
                     " sequences equally");
  for (auto& q : s.sequences) q.past += s.seq;
  s.seq = static_cast<int64_t>(ids.size()) / s.batch;
  s.ids = ids;
  fill_embeddings(s);
}

void Engine::check_finite(const ForwardState& s, const std::string& where) const {
  const size_t width = static_cast<size_t>(cfg_.hc() * cfg_.hidden());
  for (size_t i = 0; i < s.hidden.size(); ++i)
    if (!std::isfinite(s.hidden[i])) {
      const int64_t token = static_cast<int64_t>(i / width);
      throw InputError(dir() + ": non-finite activation in the output of " + where + " (sequence " +
                       std::to_string(token / s.seq) + ", position " +
                       std::to_string(s.sequences[token / s.seq].past + token % s.seq) + ")");
    }
}

void Engine::run_layer(int64_t layer, ForwardState& s) {
  if (layer < 0 || layer >= cfg_.layers())
    throw Error("run_layer: layer " + std::to_string(layer) + " does not exist");
  const int64_t H = cfg_.hidden(), hc = cfg_.hc(), T = s.tokens(), rows = (2 + hc) * hc;
  const unsigned threads = options_.threads;
  const std::string p = "layers." + std::to_string(layer) + ".";
  const auto hc_params = [&](const std::string& site, int64_t n_scale) {
    return std::array<Tensor, 3>{store_.get(p + "hc_" + site + "_fn", {rows, hc * H}),
                                 store_.get(p + "hc_" + site + "_base", {rows}),
                                 store_.get(p + "hc_" + site + "_scale", {n_scale})};
  };
  std::vector<float> x(static_cast<size_t>(T * H)), y(static_cast<size_t>(T * H));
  HcMix mix;

  // Attention sublayer.
  {
    const auto hcw = hc_params("attn", 3);
    const Tensor norm = store_.get(p + "attn_norm.weight", {H});
    const AttentionWeights aw = load_attention_weights(store_, cfg_, layer);
    hc_pre(s.hidden.data(), T, {hcw[0]->data(), hcw[1]->data(), hcw[2]->data()}, cfg_, threads, x.data(), mix);
    for (int64_t t = 0; t < T; ++t) rms_norm(&x[t * H], H, norm->data(), cfg_.rms_eps, &x[t * H]);
    std::vector<SequenceSpan> spans;
    for (int64_t b = 0; b < s.batch; ++b)
      spans.push_back({b * s.seq, s.seq, s.sequences[b].past, &s.sequences[b].layers[layer]});
    const AttentionContext ctx{&cfg_, layer, &main_rope_, &compress_rope_, threads, options_.observer,
                               &s.indexer_boundary_ties};
    attention_forward(ctx, aw, x.data(), T, spans, y.data());
    hc_post(s.hidden.data(), y.data(), T, mix, cfg_, threads);
  }
  // MoE sublayer.
  {
    const auto hcw = hc_params("ffn", 3);
    const Tensor norm = store_.get(p + "ffn_norm.weight", {H});
    const MoeWeights mw = load_moe_weights(store_, cfg_, layer);
    hc_pre(s.hidden.data(), T, {hcw[0]->data(), hcw[1]->data(), hcw[2]->data()}, cfg_, threads, x.data(), mix);
    for (int64_t t = 0; t < T; ++t) rms_norm(&x[t * H], H, norm->data(), cfg_.rms_eps, &x[t * H]);
    const MoeContext ctx{&cfg_, layer, threads, options_.observer, options_.observe_all_experts};
    s.routing[layer] = moe_forward(ctx, store_, mw, x.data(), s.ids.data(), T, y.data());
    hc_post(s.hidden.data(), y.data(), T, mix, cfg_, threads);
  }
  check_finite(s, "layer " + std::to_string(layer));
}

std::vector<float> Engine::final_hidden(const ForwardState& s, bool last_only) {
  const int64_t H = cfg_.hidden(), hc = cfg_.hc();
  std::vector<float> streams;
  int64_t rows = s.tokens();
  const float* src = s.hidden.data();
  if (last_only) {
    rows = s.batch;
    for (int64_t b = 0; b < s.batch; ++b) {
      const float* last = &s.hidden[((b + 1) * s.seq - 1) * hc * H];
      streams.insert(streams.end(), last, last + hc * H);
    }
    src = streams.data();
  }
  const Tensor fn = store_.get("hc_head_fn", {hc, hc * H});
  const Tensor base = store_.get("hc_head_base", {hc});
  const Tensor scale = store_.get("hc_head_scale", {1});
  const Tensor norm = store_.get("norm.weight", {H});
  std::vector<float> h(static_cast<size_t>(rows * H));
  hc_head(src, rows, {fn->data(), base->data(), scale->data()}, cfg_, options_.threads, h.data());
  for (int64_t t = 0; t < rows; ++t) rms_norm(&h[t * H], H, norm->data(), cfg_.rms_eps, &h[t * H]);
  return h;
}

std::vector<float> Engine::head(const ForwardState& s, bool last_only) {
  const int64_t H = cfg_.hidden(), V = cfg_.base.vocab_size;
  const std::vector<float> h = final_hidden(s, last_only);
  const int64_t rows = static_cast<int64_t>(h.size()) / H;
  std::vector<float> logits(static_cast<size_t>(rows * V));
  // The head in slabs of about 64 MB of f32 rows, so that it is never whole in memory.
  const int64_t slab = std::max<int64_t>(1, (int64_t{64} << 20) / (H * 4));
  std::vector<float> part;
  for (int64_t v0 = 0; v0 < V; v0 += slab) {
    const int64_t n = std::min(slab, V - v0);
    const std::vector<float> w = store_.rows("head.weight", V, H, static_cast<size_t>(v0), static_cast<size_t>(v0 + n));
    part.resize(static_cast<size_t>(rows * n));
    matmul(h.data(), w.data(), part.data(), static_cast<size_t>(rows), static_cast<size_t>(n), static_cast<size_t>(H),
           options_.threads);
    for (int64_t r = 0; r < rows; ++r) std::copy_n(&part[r * n], n, &logits[r * V + v0]);
  }
  for (size_t i = 0; i < logits.size(); ++i)
    if (!std::isfinite(logits[i]))
      throw InputError(dir() + ": non-finite logit (row " + std::to_string(i / V) + ", token " + std::to_string(i % V) + ")");
  return logits;
}

std::vector<float> Engine::forward(const std::vector<int64_t>& ids, int64_t batch) {
  ForwardState s = embed(ids, batch);
  for (int64_t l = 0; l < cfg_.layers(); ++l) run_layer(l, s);
  return head(s);
}

}  // namespace fp4kit::engine
