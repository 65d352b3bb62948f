// Every NVFP4 block-scale method, with and without GPTQ, on full-size linears: the weight SQNR, the
// layer-output error ‖X·Wᵀ − X·Ŵᵀ‖ / ‖X·Wᵀ‖ on held-back rows that calibration did not see, and the
// CPU time per GB of weights. The shapes are real, the values synthetic:
//
//  - weights: Student-t (ν = 5) times 0.02, each row scaled by exp(0.2·N(0,1)); the V4-Pro
//    attention weights then go through DeepSeek's FP8 128×128-block quantization (E8M0 scales) and
//    back, so the methods start from FP8 values as `convert --recipe all-linear` does; the Llama
//    layer is rounded to BF16;
//  - activations, per input: x_c = s_c·(g_c + (L·u)_c), g ~ N(0, I), u ~ N(0, I₁₆), L [K, 16] ~
//    N(0, 1/16): every channel shares a rank-16 component (correlated channels), s_c =
//    exp(0.5·N(0,1)) (channels of unequal size), and every 100th channel ×10 (outlier channels,
//    as LLM activations have). Calibration: max(2K, 4096) rows; held back: 1024 other rows.
//
// Statistics as `calibrate` gives them: the 16×16 diagonal blocks of XᵀX (hessian) and the full XᵀX
// (GPTQ; λ = 0.01, 128-column batches), in F64 sums (the full XᵀX: F32 products summed in F64 per
// row panel). Every method quantizes the whole matrix (timed, all threads, as convert runs it:
// ModelOpt numerics, the global amax of the whole tensor); SQNR over the whole matrix; the
// layer-output error over its first --error-rows rows (rows are independent for every method, so
// this estimates the whole matrix's). GPTQ's time includes its factor of XᵀX (computed once per
// input here, counted in every GPTQ row, as convert computes it once per linear). Inputs wider than --gptq-max-k get no GPTQ row (the K³ factor in F64 on the
// CPU; the GPU path is `convert --gptq --device cuda`).
//
// --no-gptq leaves out every GPTQ row (and the full XᵀX and its factor).
//
//   scale_methods_bench [--set v4-pro-attention|llama-3b-layer|all] [--threads T] [--error-rows R]
//                       [--gptq-max-k K] [--no-gptq]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/parallel.h"
#include "convert/nvfp4_quantizer.h"
#include "engine/matmul.h"
#include "formats/bf16.h"
#include "formats/fp8_block.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_gptq.h"
#include "formats/nvfp4_hessian_sweep.h"
#include "formats/nvfp4_scale_search.h"

using namespace fp4kit;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct LinearShape {
  const char* name;
  size_t n;
};

struct InputSet {
  const char* name;  // what feeds these linears
  size_t k;
  std::vector<LinearShape> linears;
};

struct ModelSet {
  const char* name;
  bool fp8_source;  // FP8 128×128 blocks (V4's attention) or BF16
  std::vector<InputSet> inputs;
};

std::vector<ModelSet> model_sets() {
  return {
      // V4-Pro's attention (docs/reference: wq_a [1536, 7168], wkv [512, 7168], wq_b [65536, 1536],
      // wo_a [16384, 4096] in 16 row groups of 1024, each multiplying its own 4096-wide slice of
      // the attention output; wo_b [7168, 16384]).
      {"v4-pro-attention",
       true,
       {{"attn_norm(h)", 7168, {{"wq_a", 1536}, {"wkv", 512}}},
        {"q_norm(q_a)", 1536, {{"wq_b", 65536}}},
        {"attention output, one wo_a group", 4096, {{"wo_a (one group)", 1024}}},
        {"wo_a output", 16384, {{"wo_b", 7168}}}}},
      // One decoder layer shaped as Llama 3.2 3B (hidden 3072, intermediate 8192, 24 query and 8
      // key/value heads of 128).
      {"llama-3b-layer",
       false,
       {{"input_layernorm(h)", 3072, {{"q_proj", 3072}, {"k_proj", 1024}, {"v_proj", 1024}}},
        {"attention output", 3072, {{"o_proj", 3072}}},
        {"post_attention_layernorm(h)", 3072, {{"gate_proj", 8192}, {"up_proj", 8192}}},
        {"silu(gate)·up", 8192, {{"down_proj", 3072}}}}},
  };
}

// Rows of the synthetic activations of one input (row-major [rows, k]).
struct ActivationModel {
  size_t k;
  std::vector<float> scale;  // s_c
  std::vector<float> mix;    // L [k, 16]
  ActivationModel(size_t k_, std::mt19937& rng) : k(k_), scale(k_), mix(k_ * 16) {
    std::normal_distribution<float> d;
    for (size_t c = 0; c < k; ++c) scale[c] = std::exp(0.5f * d(rng)) * (c % 100 == 7 ? 10.0f : 1.0f);
    for (float& v : mix) v = 0.25f * d(rng);
  }
  std::vector<float> draw(size_t rows, std::mt19937& rng) const {
    std::normal_distribution<float> d;
    std::vector<float> x(rows * k);
    float u[16];
    for (size_t r = 0; r < rows; ++r) {
      for (float& v : u) v = d(rng);
      for (size_t c = 0; c < k; ++c) {
        float shared = 0;
        for (int j = 0; j < 16; ++j) shared += mix[c * 16 + j] * u[j];
        x[r * k + c] = scale[c] * (d(rng) + shared);
      }
    }
    return x;
  }
};

std::vector<float> transpose(const std::vector<float>& x, size_t rows, size_t cols) {
  std::vector<float> t(x.size());
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) t[c * rows + r] = x[r * cols + c];
  return t;
}

// Σ_rows x·xᵀ in F64: F32 products of panels of 256 rows (the library's matmul), summed in F64.
std::vector<double> full_xtx(const std::vector<float>& x, size_t rows, size_t k, unsigned threads) {
  constexpr size_t kPanel = 256;
  std::vector<double> h(k * k, 0.0);
  std::vector<float> part(k * k);
  for (size_t r0 = 0; r0 < rows; r0 += kPanel) {
    const size_t m = std::min(kPanel, rows - r0);
    const std::vector<float> xt = transpose(std::vector<float>(x.begin() + r0 * k, x.begin() + (r0 + m) * k), m, k);
    engine::matmul(xt.data(), xt.data(), part.data(), k, k, m, threads);
    for (size_t i = 0; i < h.size(); ++i) h[i] += part[i];
  }
  return h;
}

// The 16×16 diagonal blocks of XᵀX, summed in F64, rounded to F32 as the statistics file stores them.
std::vector<HessianBlockWeight> block_weights(const std::vector<float>& x, size_t rows, size_t k, unsigned threads) {
  const size_t blocks = k / 16;
  std::vector<HessianBlockWeight> out(blocks);
  parallel_for(blocks, 1, threads, [&](size_t a, size_t b) {
    for (size_t blk = a; blk < b; ++blk) {
      double s[256] = {};
      for (size_t r = 0; r < rows; ++r) {
        const float* xr = x.data() + r * k + blk * 16;
        for (int i = 0; i < 16; ++i)
          for (int j = 0; j < 16; ++j) s[i * 16 + j] += static_cast<double>(xr[i]) * xr[j];
      }
      float f[256];
      for (int i = 0; i < 256; ++i) f[i] = static_cast<float>(s[i]);
      out[blk] = hessian_block_weight(f, kDefaultHessianDamping);
    }
  });
  return out;
}

// The source weight [n, k] as f32 values (after FP8 blocks or BF16 rounding, as the checkpoint holds it).
std::vector<float> source_weight(size_t n, size_t k, bool fp8, std::mt19937& rng, unsigned threads) {
  std::student_t_distribution<float> t(5.0f);
  std::normal_distribution<float> d;
  std::vector<float> w(n * k);
  for (size_t r = 0; r < n; ++r) {
    const float row = 0.02f * std::exp(0.2f * d(rng));
    for (size_t c = 0; c < k; ++c) w[r * k + c] = row * t(rng);
  }
  if (!fp8) {
    for (float& v : w) v = BF16::from_float(v).to_float();
    return w;
  }
  const Fp8BlockShape shape{n, k, Fp8ScaleKind::E8M0};
  std::vector<uint8_t> q(n * k), scales(shape.scale_rows() * shape.scale_cols());
  const Fp8BlockKernels& kernels = fp8_block_kernels();
  kernels.quantize(FloatSpan{w.data(), DType::F32, w.size()}, shape, q.data(), scales.data());
  parallel_for(n, 128, threads, [&](size_t a, size_t b) {
    kernels.dequantize_f32(q.data(), scales.data(), shape, a, b, w.data() + a * k);
  });
  return w;
}

struct Measured {
  double sqnr_db = 0, error = 0, seconds = 0;
};

// SQNR of the whole matrix, and the layer-output error of its first `rows` rows on the held-back x.
Measured measure(const std::vector<float>& w, const Nvfp4Tensor& q, size_t n, size_t k, const std::vector<float>& held,
                 size_t held_rows, size_t rows, unsigned threads) {
  std::vector<float> wq(w.size());
  const Nvfp4Scaling scaling{Nvfp4Numerics::ModelOpt, q.global, DType::F32};
  parallel_for(n, 64, threads, [&](size_t a, size_t b) {
    nvfp4_ref::dequantize(q.packed.data() + a * k / 2, q.scales.data() + a * k / 16, (b - a) * k, scaling,
                          wq.data() + a * k);
  });
  double signal = 0, noise = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double e = static_cast<double>(w[i]) - wq[i];
    signal += static_cast<double>(w[i]) * w[i];
    noise += e * e;
  }
  std::vector<float> diff(rows * k);
  for (size_t i = 0; i < diff.size(); ++i) diff[i] = w[i] - wq[i];
  std::vector<float> y(held_rows * rows), dy(held_rows * rows);
  engine::matmul(held.data(), w.data(), y.data(), held_rows, rows, k, threads);
  engine::matmul(held.data(), diff.data(), dy.data(), held_rows, rows, k, threads);
  double ys = 0, es = 0;
  for (size_t i = 0; i < y.size(); ++i) ys += static_cast<double>(y[i]) * y[i], es += static_cast<double>(dy[i]) * dy[i];
  Measured m;
  m.sqnr_db = 10.0 * std::log10(signal / noise);
  m.error = std::sqrt(es / ys);
  if (!std::isfinite(m.sqnr_db) || !std::isfinite(m.error)) throw Error("non-finite measurement");
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  std::string set = "all";
  unsigned threads = default_threads();
  size_t error_rows = 2048, gptq_max_k = 8192;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--set" && i + 1 < argc) set = argv[++i];
    else if (a == "--threads" && i + 1 < argc) threads = static_cast<unsigned>(std::stoul(argv[++i]));
    else if (a == "--error-rows" && i + 1 < argc) error_rows = std::stoul(argv[++i]);
    else if (a == "--gptq-max-k" && i + 1 < argc) gptq_max_k = std::stoul(argv[++i]);
    else if (a == "--no-gptq") gptq_max_k = 0;
    else {
      std::fprintf(stderr, "usage: scale_methods_bench [--set v4-pro-attention|llama-3b-layer|all] [--threads T] "
                           "[--error-rows R] [--gptq-max-k K] [--no-gptq]\n");
      return 2;
    }
  }
  const Nvfp4ScaleMethod methods[] = {Nvfp4ScaleMethod::Max, Nvfp4ScaleMethod::Mse, Nvfp4ScaleMethod::FourOverSix,
                                      Nvfp4ScaleMethod::Hessian};
  bool any = false;
  for (const ModelSet& ms : model_sets()) {
    if (set != "all" && set != ms.name) continue;
    any = true;
    std::printf("## %s (%s source), %u threads\n", ms.name, ms.fp8_source ? "FP8 128x128-block" : "BF16", threads);
    std::printf("| linear | [N, K] | --scales | gptq | SQNR dB | layer-output error | s | s per GB |\n");
    std::printf("|---|---|---|---|---:|---:|---:|---:|\n");
    std::mt19937 rng(20261205);
    std::vector<std::vector<double>> errors;  // per linear, per (method, gptq) slot; NaN: not run
    for (const InputSet& in : ms.inputs) {
      const size_t k = in.k, calib_rows = std::max<size_t>(2 * k, 4096), held_rows = 1024;
      const ActivationModel model(k, rng);
      const std::vector<float> calib = model.draw(calib_rows, rng);
      const std::vector<float> held = model.draw(held_rows, rng);
      auto t0 = std::chrono::steady_clock::now();
      const std::vector<HessianBlockWeight> weights = block_weights(calib, calib_rows, k, threads);
      const double blocks_s = seconds_since(t0);
      const bool gptq = k <= gptq_max_k;
      // GPTQ's factor does not depend on the scale method: computed once per input here, its time
      // added to every GPTQ row (convert computes it once per linear).
      GptqFactor factor;
      double factor_s = 0;
      if (gptq) {
        const std::vector<double> h = full_xtx(calib, calib_rows, k, threads);
        t0 = std::chrono::steady_clock::now();
        factor = gptq_factor(h, k, GptqOptions{}, threads);
        factor_s = seconds_since(t0);
        if (!factor.usable) throw Error(std::string("XᵀX not usable: ") + factor.why);
      }
      std::fprintf(stderr, "%s: statistics of %s ready (blocks %.1f s, GPTQ factor %.1f s)\n", ms.name, in.name, blocks_s,
                   factor_s);
      for (const LinearShape& lin : in.linears) {
        const size_t n = lin.n, rows = std::min(n, error_rows);
        const std::vector<float> w = source_weight(n, k, ms.fp8_source, rng, threads);
        const FloatSpan src{w.data(), DType::F32, w.size()};
        const float amax = parallel_amax(src, threads);
        const double gb = static_cast<double>(n * k * 2) / 1e9;  // as BF16 weights
        std::vector<double>& row = errors.emplace_back(8, std::nan(""));
        int slot = 0;
        for (Nvfp4ScaleMethod method : methods) {
          for (bool with_gptq : {false, true}) {
            if (with_gptq && !gptq) {
              if (gptq_max_k == 0) {
                ++slot;
                continue;
              }
              std::printf("| %s | [%zu, %zu] | %s | yes | not run: K > %zu | | | |\n", lin.name, n, k,
                          std::string(scale_method_name(method)).c_str(), gptq_max_k);
              ++slot;
              continue;
            }
            t0 = std::chrono::steady_clock::now();
            Nvfp4Tensor q;
            if (method == Nvfp4ScaleMethod::Max) {
              q = quantize_nvfp4(src, nvfp4_scaling(amax, Nvfp4Numerics::ModelOpt, DType::F32), threads);
            } else if (method == Nvfp4ScaleMethod::Hessian) {
              Nvfp4HessianStats stats;
              q = quantize_nvfp4_hessian(src, weights, HessianLayout{k / 16, n},
                                         nvfp4_search_scaling(amax, method, Nvfp4Numerics::ModelOpt, DType::F32), threads,
                                         stats);
            } else {
              q = quantize_nvfp4_searched(src, nvfp4_search_scaling(amax, method, Nvfp4Numerics::ModelOpt, DType::F32),
                                          threads);
            }
            if (with_gptq) {
              const GptqFactor& f = factor;
              const Nvfp4Scaling scaling{Nvfp4Numerics::ModelOpt, q.global, DType::F32};
              parallel_for(n, kGptqRowsPerPiece, threads, [&](size_t a, size_t b) {
                nvfp4_gptq_quantize_rows(src.subspan(a * k, (b - a) * k), k, q.scales.data() + a * k / 16, scaling, f,
                                         kDefaultGptqBlock, q.packed.data() + a * k / 2);
              });
            }
            const double s = seconds_since(t0) + (with_gptq ? factor_s : 0.0);
            const Measured m = measure(w, q, n, k, held, held_rows, rows, threads);
            std::printf("| %s | [%zu, %zu] | %s | %s | %.3f | %.5f | %.2f | %.1f |\n", lin.name, n, k,
                        std::string(scale_method_name(method)).c_str(), with_gptq ? "yes" : "no", m.sqnr_db, m.error, s,
                        s / gb);
            std::fflush(stdout);
            row[slot] = m.error;
            ++slot;
          }
        }
      }
    }
    // Means over the linears every slot ran on, so that each column averages the same linears.
    std::vector<double> sum(8, 0.0);
    size_t complete = 0;
    for (const std::vector<double>& r : errors) {
      if (std::any_of(r.begin(), r.end(), [](double e) { return std::isnan(e); })) continue;
      ++complete;
      for (int i = 0; i < 8; ++i) sum[i] += r[i];
    }
    if (gptq_max_k == 0) {
      std::vector<double> plain(4, 0.0);
      for (const std::vector<double>& r : errors)
        for (int m = 0; m < 4; ++m) plain[m] += r[2 * m];
      std::printf("\nMean layer-output error over the %zu linears:\n\n| --scales | plain |\n|---|---:|\n", errors.size());
      for (int m = 0; m < 4; ++m)
        std::printf("| %s | %.5f |\n", std::string(scale_method_name(methods[m])).c_str(),
                    plain[m] / static_cast<double>(errors.size()));
      std::printf("\n");
      continue;
    }
    std::printf("\nMean layer-output error over the %zu of %zu linears with GPTQ rows:\n\n| --scales | plain | --gptq |\n"
                "|---|---:|---:|\n",
                complete, errors.size());
    for (int m = 0; m < 4 && complete > 0; ++m)
      std::printf("| %s | %.5f | %.5f |\n", std::string(scale_method_name(methods[m])).c_str(),
                  sum[2 * m] / static_cast<double>(complete), sum[2 * m + 1] / static_cast<double>(complete));
    std::printf("\n");
  }
  if (!any) {
    std::fprintf(stderr, "scale_methods_bench: unknown --set %s\n", set.c_str());
    return 2;
  }
  return 0;
}
