#include "engine/hyper_connection.h"

#include <cmath>

#include "base/parallel.h"
#include "engine/matmul.h"
#include "engine/ops.h"

namespace fp4kit::engine {

namespace {

// z [T, rows] = rmsnorm_unweighted(flattened streams) . fn^T
std::vector<float> mixing_logits(const float* streams, int64_t tokens, int64_t rows, const float* fn,
                                 const ModelConfig& cfg, unsigned threads) {
  const size_t width = static_cast<size_t>(cfg.hc() * cfg.hidden());
  std::vector<float> normed(static_cast<size_t>(tokens) * width);
  parallel_for(static_cast<size_t>(tokens), 16, threads, [&](size_t b, size_t e) {
    for (size_t t = b; t < e; ++t) rms_norm(streams + t * width, width, nullptr, cfg.rms_eps, normed.data() + t * width);
  });
  std::vector<float> z(static_cast<size_t>(tokens * rows));
  matmul(normed.data(), fn, z.data(), static_cast<size_t>(tokens), static_cast<size_t>(rows), width, threads);
  return z;
}

void collapse(const float* x, const float* pre, int64_t hc, int64_t hidden, float* out) {
  for (int64_t d = 0; d < hidden; ++d) {
    float s = 0;
    for (int64_t j = 0; j < hc; ++j) s += pre[j] * x[j * hidden + d];
    out[d] = s;
  }
}

}  // namespace

void hc_pre(const float* streams, int64_t tokens, const HcParams& p, const ModelConfig& cfg, unsigned threads,
            float* collapsed, HcMix& mix) {
  const int64_t hc = cfg.hc(), hidden = cfg.hidden(), rows = (2 + hc) * hc;
  const std::vector<float> z = mixing_logits(streams, tokens, rows, p.fn, cfg, threads);
  mix.post.assign(static_cast<size_t>(tokens * hc), 0);
  mix.comb.assign(static_cast<size_t>(tokens * hc * hc), 0);
  const float eps = cfg.hc_eps;
  parallel_for(static_cast<size_t>(tokens), 16, threads, [&](size_t b, size_t e) {
    std::vector<float> pre(static_cast<size_t>(hc));
    for (size_t t = b; t < e; ++t) {
      const float* zt = z.data() + t * rows;
      float* post = mix.post.data() + t * hc;
      float* c = mix.comb.data() + t * hc * hc;
      for (int64_t j = 0; j < hc; ++j) {
        pre[j] = sigmoid(zt[j] * p.scale[0] + p.base[j]) + eps;
        post[j] = 2.0f * sigmoid(zt[hc + j] * p.scale[1] + p.base[hc + j]);
      }
      // Softmax over k of each row, plus eps.
      for (int64_t j = 0; j < hc; ++j) {
        float* row = c + j * hc;
        float mx = -INFINITY;
        for (int64_t k = 0; k < hc; ++k) {
          row[k] = zt[2 * hc + j * hc + k] * p.scale[2] + p.base[2 * hc + j * hc + k];
          mx = std::max(mx, row[k]);
        }
        float sum = 0;
        for (int64_t k = 0; k < hc; ++k) sum += (row[k] = std::exp(row[k] - mx));
        for (int64_t k = 0; k < hc; ++k) row[k] = row[k] / sum + eps;
      }
      // Sinkhorn: one column step, then (iters - 1) times a row step and a column step.
      const auto column_step = [&] {
        for (int64_t k = 0; k < hc; ++k) {
          float s = 0;
          for (int64_t j = 0; j < hc; ++j) s += c[j * hc + k];
          for (int64_t j = 0; j < hc; ++j) c[j * hc + k] /= s + eps;
        }
      };
      column_step();
      for (int64_t it = 1; it < cfg.hc_sinkhorn_iters; ++it) {
        for (int64_t j = 0; j < hc; ++j) {
          float s = 0;
          for (int64_t k = 0; k < hc; ++k) s += c[j * hc + k];
          for (int64_t k = 0; k < hc; ++k) c[j * hc + k] /= s + eps;
        }
        column_step();
      }
      collapse(streams + t * hc * hidden, pre.data(), hc, hidden, collapsed + t * hidden);
    }
  });
}

void hc_post(float* streams, const float* y, int64_t tokens, const HcMix& mix, const ModelConfig& cfg, unsigned threads) {
  const int64_t hc = cfg.hc(), hidden = cfg.hidden();
  parallel_for(static_cast<size_t>(tokens), 16, threads, [&](size_t b, size_t e) {
    std::vector<float> out(static_cast<size_t>(hc * hidden));
    for (size_t t = b; t < e; ++t) {
      float* x = streams + t * hc * hidden;
      const float* c = mix.comb.data() + t * hc * hc;
      const float* post = mix.post.data() + t * hc;
      for (int64_t k = 0; k < hc; ++k)
        for (int64_t d = 0; d < hidden; ++d) {
          float s = 0;
          for (int64_t j = 0; j < hc; ++j) s += c[j * hc + k] * x[j * hidden + d];
          out[k * hidden + d] = post[k] * y[t * hidden + d] + s;
        }
      std::copy(out.begin(), out.end(), x);
    }
  });
}

void hc_head(const float* streams, int64_t tokens, const HcParams& p, const ModelConfig& cfg, unsigned threads,
             float* out) {
  const int64_t hc = cfg.hc(), hidden = cfg.hidden();
  const std::vector<float> z = mixing_logits(streams, tokens, hc, p.fn, cfg, threads);
  parallel_for(static_cast<size_t>(tokens), 16, threads, [&](size_t b, size_t e) {
    std::vector<float> pre(static_cast<size_t>(hc));
    for (size_t t = b; t < e; ++t) {
      for (int64_t j = 0; j < hc; ++j) pre[j] = sigmoid(z[t * hc + j] * p.scale[0] + p.base[j]) + cfg.hc_eps;
      collapse(streams + t * hc * hidden, pre.data(), hc, hidden, out + t * hidden);
    }
  });
}

}  // namespace fp4kit::engine
