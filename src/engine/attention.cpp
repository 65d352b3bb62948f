#include "engine/attention.h"

#include <algorithm>
#include <cmath>

#include "base/parallel.h"
#include "engine/indexer.h"
#include "engine/matmul.h"
#include "engine/ops.h"

namespace fp4kit::engine {

AttentionWeights load_attention_weights(WeightStore& st, const ModelConfig& cfg, int64_t layer) {
  const auto& b = cfg.base;
  const std::string p = "layers." + std::to_string(layer) + ".attn.";
  const int64_t H = b.hidden_size, qr = b.q_lora_rank, nh = b.num_attention_heads, D = b.head_dim;
  const int64_t G = b.o_groups, R = b.o_lora_rank;
  AttentionWeights w;
  w.wq_a = st.get(p + "wq_a.weight", {qr, H});
  w.q_norm = st.get(p + "q_norm.weight", {qr});
  w.wq_b = st.get(p + "wq_b.weight", {nh * D, qr});
  w.wkv = st.get(p + "wkv.weight", {D, H});
  w.kv_norm = st.get(p + "kv_norm.weight", {D});
  w.wo_a = st.get(p + "wo_a.weight", {G * R, nh * D / G});
  w.wo_b = st.get(p + "wo_b.weight", {H, G * R});
  w.sink = st.get(p + "attn_sink", {nh});
  const AttentionKind kind = cfg.attention[layer];
  if (kind != AttentionKind::Sliding) {
    const int64_t m = ModelConfig::ratio(kind), c = kind == AttentionKind::Csa ? 2 : 1;
    w.cmp_wkv = st.get(p + "compressor.wkv.weight", {c * D, H});
    w.cmp_wgate = st.get(p + "compressor.wgate.weight", {c * D, H});
    w.cmp_ape = st.get(p + "compressor.ape", {m, c * D});
    w.cmp_norm = st.get(p + "compressor.norm.weight", {D});
  }
  if (kind == AttentionKind::Csa) {
    const int64_t nI = b.index_n_heads, dI = b.index_head_dim;
    w.idx_wq_b = st.get(p + "indexer.wq_b.weight", {nI * dI, qr});
    w.idx_weights_proj = st.get(p + "indexer.weights_proj.weight", {nI, H});
    w.idx_wkv = st.get(p + "indexer.compressor.wkv.weight", {2 * dI, H});
    w.idx_wgate = st.get(p + "indexer.compressor.wgate.weight", {2 * dI, H});
    w.idx_ape = st.get(p + "indexer.compressor.ape", {4, 2 * dI});
    w.idx_norm = st.get(p + "indexer.compressor.norm.weight", {dI});
  }
  return w;
}

namespace {

struct Projector {
  const AttentionContext& ctx;
  std::string prefix;
  int64_t tokens;
  // out [T, N] = x [T, K] . w^T, showing x to the observer first.
  std::vector<float> operator()(const char* name, const float* x, int64_t K, const Tensor& w, int64_t N) const {
    if (ctx.observer) {
      const std::string full = prefix + name;
      ctx.observer->on_linear_input({full, x, tokens, K, {}, {}});
    }
    std::vector<float> y(static_cast<size_t>(tokens * N));
    matmul(x, w->data(), y.data(), static_cast<size_t>(tokens), static_cast<size_t>(N), static_cast<size_t>(K), ctx.threads);
    return y;
  }
};

}  // namespace

void attention_forward(const AttentionContext& ctx, const AttentionWeights& w, const float* a, int64_t T,
                       const std::vector<SequenceSpan>& sequences, float* out) {
  const ModelConfig& cfg = *ctx.cfg;
  const auto& b = cfg.base;
  const int64_t H = b.hidden_size, qr = b.q_lora_rank, nh = b.num_attention_heads, D = b.head_dim;
  const int64_t G = b.o_groups, R = b.o_lora_rank, W = b.sliding_window, rd = cfg.rope_dim;
  const AttentionKind kind = cfg.attention[ctx.layer];
  const Rope& rope = kind == AttentionKind::Sliding ? *ctx.main_rope : *ctx.compress_rope;
  const Projector project{ctx, "layers." + std::to_string(ctx.layer) + ".attn.", T};
  const unsigned threads = ctx.threads;

  std::vector<int64_t> position(static_cast<size_t>(T));
  for (const SequenceSpan& s : sequences)
    for (int64_t t = 0; t < s.length; ++t) position[s.first_row + t] = s.past + t;

  // Queries: q_res = q_norm(a wq_a^T); q = per-head RMS norm of q_res wq_b^T, rotated.
  std::vector<float> q_res = project("wq_a", a, H, w.wq_a, qr);
  for (int64_t t = 0; t < T; ++t) rms_norm(&q_res[t * qr], qr, w.q_norm->data(), cfg.rms_eps, &q_res[t * qr]);
  std::vector<float> q = project("wq_b", q_res.data(), qr, w.wq_b, nh * D);
  parallel_for(static_cast<size_t>(T), 8, threads, [&](size_t b0, size_t e0) {
    for (size_t t = b0; t < e0; ++t)
      for (int64_t h = 0; h < nh; ++h) {
        float* qh = &q[(t * nh + h) * D];
        rms_norm(qh, D, nullptr, cfg.rms_eps, qh);
        rope.apply(qh + D - rd, position[t]);
      }
  });
  // The shared key/value head.
  std::vector<float> kv = project("wkv", a, H, w.wkv, D);
  for (int64_t t = 0; t < T; ++t) {
    rms_norm(&kv[t * D], D, w.kv_norm->data(), cfg.rms_eps, &kv[t * D]);
    rope.apply(&kv[t * D + D - rd], position[t]);
  }

  // Compressed entries (and the indexer's inputs).
  const int64_t m = ModelConfig::ratio(kind);
  std::vector<float> idx_q, idx_w;
  const int64_t nI = b.index_n_heads, dI = b.index_head_dim;
  if (kind != AttentionKind::Sliding) {
    const CompressorWeights cw{w.cmp_ape->data(), w.cmp_norm->data(), m, D, kind == AttentionKind::Csa};
    const std::vector<float> ck = project("compressor.wkv", a, H, w.cmp_wkv, cw.row_width());
    const std::vector<float> cg = project("compressor.wgate", a, H, w.cmp_wgate, cw.row_width());
    for (const SequenceSpan& s : sequences)
      compressor_append(s.cache->compressor, cw, &ck[s.first_row * cw.row_width()], &cg[s.first_row * cw.row_width()],
                        s.length, *ctx.compress_rope, cfg.rms_eps);
  }
  if (kind == AttentionKind::Csa) {
    idx_q = project("indexer.wq_b", q_res.data(), qr, w.idx_wq_b, nI * dI);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < nI; ++h) ctx.compress_rope->apply(&idx_q[(t * nI + h) * dI + dI - rd], position[t]);
    idx_w = project("indexer.weights_proj", a, H, w.idx_weights_proj, nI);
    const float head_scale = 1.0f / std::sqrt(static_cast<float>(nI));
    for (float& v : idx_w) v *= head_scale;
    const CompressorWeights iw{w.idx_ape->data(), w.idx_norm->data(), 4, dI, true};
    const std::vector<float> ik = project("indexer.compressor.wkv", a, H, w.idx_wkv, 2 * dI);
    const std::vector<float> ig = project("indexer.compressor.wgate", a, H, w.idx_wgate, 2 * dI);
    for (const SequenceSpan& s : sequences)
      compressor_append(s.cache->indexer, iw, &ik[s.first_row * 2 * dI], &ig[s.first_row * 2 * dI], s.length,
                        *ctx.compress_rope, cfg.rms_eps);
  }

  // Attention, sequence by sequence: window keys (cached + new) then compressed entries.
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  std::vector<float> o(static_cast<size_t>(T * nh * D));
  for (const SequenceSpan& s : sequences) {
    AttentionCache& cache = *s.cache;
    const int64_t n_old = static_cast<int64_t>(cache.window.size()) / D;
    std::vector<float> keys(cache.window);
    keys.insert(keys.end(), kv.begin() + s.first_row * D, kv.begin() + (s.first_row + s.length) * D);
    const float* entries = cache.compressor.entries.data();

    std::vector<std::vector<int64_t>> picks(static_cast<size_t>(s.length));
    if (kind == AttentionKind::Csa) {
      std::vector<char> tie(static_cast<size_t>(s.length), 0);
      parallel_for(static_cast<size_t>(s.length), 1, threads, [&](size_t b0, size_t e0) {
        for (size_t t = b0; t < e0; ++t) {
          const int64_t row = s.first_row + static_cast<int64_t>(t), visible = (position[row] + 1) / 4;
          IndexerPick pick = indexer_select(&idx_q[row * nI * dI], &idx_w[row * nI], cache.indexer.entries.data(),
                                            visible, b.index_topk, nI, dI);
          picks[t] = std::move(pick.entries);
          tie[t] = pick.boundary_tie;
        }
      });
      if (ctx.indexer_boundary_ties)
        for (char c : tie) *ctx.indexer_boundary_ties += c;
    }

    parallel_for(static_cast<size_t>(s.length * nh), 1, threads, [&](size_t b0, size_t e0) {
      std::vector<const float*> key_list;
      std::vector<float> score;
      for (size_t i = b0; i < e0; ++i) {
        const int64_t t = static_cast<int64_t>(i) / nh, h = static_cast<int64_t>(i) % nh, row = s.first_row + t;
        const int64_t p = position[row];
        key_list.clear();
        for (int64_t j = std::max<int64_t>(0, n_old + t - W + 1); j <= n_old + t; ++j) key_list.push_back(&keys[j * D]);
        if (kind == AttentionKind::Hca)
          for (int64_t e = 0; e < (p + 1) / m; ++e) key_list.push_back(entries + e * D);
        if (kind == AttentionKind::Csa)
          for (int64_t e : picks[t]) key_list.push_back(entries + e * D);

        const float* qh = &q[(row * nh + h) * D];
        score.resize(key_list.size());
        const float sink = (*w.sink)[h];
        float mx = sink;
        for (size_t j = 0; j < key_list.size(); ++j) {
          score[j] = dot(qh, key_list[j], static_cast<size_t>(D)) * scale;
          mx = std::max(mx, score[j]);
        }
        double sum = std::exp(static_cast<double>(sink - mx));
        for (float& v : score) sum += (v = std::exp(v - mx));
        const float total = static_cast<float>(sum);
        float* oh = &o[(row * nh + h) * D];
        std::fill(oh, oh + D, 0.0f);
        for (size_t j = 0; j < key_list.size(); ++j) {
          const float pj = score[j] / total;
          const float* v = key_list[j];
          for (int64_t d = 0; d < D; ++d) oh[d] += pj * v[d];
        }
        rope.apply(oh + D - rd, p, /*inverse=*/true);
      }
    });
    // Keep the last W-1 keys for the next chunk.
    const int64_t keep = std::min<int64_t>(W - 1, n_old + s.length);
    cache.window.assign(keys.end() - keep * D, keys.end());
  }

  // Grouped output projection: group g of heads through rows [g*R, (g+1)*R) of wo_a, then wo_b.
  if (ctx.observer) {
    const std::string name = project.prefix + "wo_a";
    ctx.observer->on_linear_input({name, o.data(), T, nh * D, {}, {}});
  }
  const int64_t dg = nh * D / G;
  std::vector<float> u(static_cast<size_t>(T * G * R)), slice(static_cast<size_t>(T * dg)), ug(static_cast<size_t>(T * R));
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t t = 0; t < T; ++t) std::copy_n(&o[t * nh * D + g * dg], dg, &slice[t * dg]);
    matmul(slice.data(), w.wo_a->data() + g * R * dg, ug.data(), static_cast<size_t>(T), static_cast<size_t>(R),
           static_cast<size_t>(dg), threads);
    for (int64_t t = 0; t < T; ++t) std::copy_n(&ug[t * R], R, &u[t * G * R + g * R]);
  }
  const std::vector<float> y = project("wo_b", u.data(), G * R, w.wo_b, H);
  std::copy(y.begin(), y.end(), out);
}

}  // namespace fp4kit::engine
