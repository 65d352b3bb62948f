// Cost of GPTQ on the CPU for one linear [N, K] (BF16, max block scales): the factor of the damped
// inverse XᵀX (K³ work, once per linear) and the compensation of the rows (N·K² work), on 1 and
// on all threads, in seconds and in GB/s of BF16 weights. XᵀX comes from 2K random correlated rows.
//
// The path the library chooses (the fast one, or the reference under FP4KIT_ISA=scalar) runs on 1
// and on all threads; --reference then runs the scalar reference on all threads in the same
// process and checks that the factor and the codes are bit-identical (exit 1 if not).
//
// --gpu adds GPTQ on the GPU (convert/gptq_gpu.h, F32): a first untimed run (cuBLAS and cuSOLVER
// load, kernels warm up), then the median of three timed runs, each from host memory to host
// memory as convert uses it (XᵀX and the weight uploaded, the codes downloaded), with its distance
// from the CPU's codes: the share of E2M1 codes that differ, and the layer-output error of both on
// the XᵀX (‖ΔW·X‖² = tr(ΔW·H·ΔWᵀ), relative to ‖W·X‖²). Without a GPU (or CUDA) it says why and
// exits 1.
//
// --all-threads-only leaves out the CPU's 1-thread row (minutes at K = 7168).
//
//   gptq_bench [--rows N] [--cols K] [--threads T] [--reference] [--gpu] [--all-threads-only]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "base/cholesky.h"
#include "base/error.h"
#include "base/parallel.h"
#include "convert/gptq_gpu.h"
#include "formats/bf16.h"
#include "formats/isa.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_gptq.h"

using namespace fp4kit;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The layer-output error ‖(W − Ŵ)·Xᵀ‖ / ‖W·Xᵀ‖ of each of `codes` on the XᵀX rows, from H = XᵀX:
// ‖D·Xᵀ‖² = Σ over rows of dᵀ·H·d. Panels of 8 rows share each pass over H (8 independent sums per
// vector, so they vectorize without reordering any sum).
std::vector<double> output_errors(const std::vector<uint16_t>& w, const std::vector<const std::vector<uint8_t>*>& codes,
                                  const std::vector<uint8_t>& scales, const Nvfp4Scaling& scaling,
                                  const std::vector<double>& h, size_t n, size_t k, unsigned threads) {
  constexpr size_t kPanel = 8;
  const size_t m = codes.size() + 1;  // the weight itself, then each rounding's difference
  std::vector<std::vector<float>> wq(codes.size(), std::vector<float>(w.size()));
  for (size_t v = 0; v < codes.size(); ++v)
    nvfp4_ref::dequantize(codes[v]->data(), scales.data(), w.size(), scaling, wq[v].data());
  std::vector<double> sums(((n + kPanel - 1) / kPanel) * m, 0.0);
  parallel_for((n + kPanel - 1) / kPanel, 1, threads, [&](size_t a, size_t b) {
    std::vector<double> t(k * m * kPanel);  // t[(j·m + v)·kPanel + r]
    for (size_t p = a; p < b; ++p) {
      std::fill(t.begin(), t.end(), 0.0);
      for (size_t r = 0; r < kPanel && p * kPanel + r < n; ++r)
        for (size_t c = 0; c < k; ++c) {
          const size_t e = (p * kPanel + r) * k + c;
          const double x = BF16{w[e]}.to_float();
          t[(c * m) * kPanel + r] = x;
          for (size_t v = 0; v + 1 < m; ++v) t[(c * m + v + 1) * kPanel + r] = x - wq[v][e];
        }
      std::vector<double> acc(m * kPanel);
      for (size_t i = 0; i < k; ++i) {
        std::fill(acc.begin(), acc.end(), 0.0);
        const double* hi = h.data() + i * k;
        for (size_t j = 0; j < k; ++j)
          for (size_t q = 0; q < m * kPanel; ++q) acc[q] += hi[j] * t[j * m * kPanel + q];
        for (size_t q = 0; q < m * kPanel; ++q) sums[p * m + q / kPanel] += t[i * m * kPanel + q] * acc[q];
      }
    }
  });
  std::vector<double> total(m, 0.0);
  for (size_t p = 0; p < sums.size() / m; ++p)
    for (size_t v = 0; v < m; ++v) total[v] += sums[p * m + v];
  std::vector<double> out;
  for (size_t v = 1; v < m; ++v) out.push_back(std::sqrt(total[v] / total[0]));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // Line by line even into a file, so that a run stopped by a time limit keeps the rows it printed.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  size_t n = 2048, k = 2048;
  unsigned threads = default_threads();
  bool with_reference = false, with_gpu = false, single_thread = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rows" && i + 1 < argc) n = std::stoul(argv[++i]);
    else if (a == "--cols" && i + 1 < argc) k = std::stoul(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) threads = static_cast<unsigned>(std::stoul(argv[++i]));
    else if (a == "--reference") with_reference = true;
    else if (a == "--gpu") with_gpu = true;
    else if (a == "--all-threads-only") single_thread = false;
    else {
      std::fprintf(stderr, "usage: gptq_bench [--rows N] [--cols K] [--threads T] [--reference] [--gpu] "
                           "[--all-threads-only]\n");
      return 2;
    }
  }
  if (k % 16 != 0) {
    std::fprintf(stderr, "gptq_bench: --cols must be a multiple of 16\n");
    return 2;
  }
  std::mt19937 rng(7);
  std::normal_distribution<float> d;
  std::vector<uint16_t> w(n * k);
  for (uint16_t& v : w) v = BF16::from_float(0.02f * d(rng)).bits;
  // XᵀX of 2K rows x = z + 0.8·z shifted by one channel (neighbouring channels correlated). Each
  // element sums its rows in order (the same values on any thread count); the threads take pieces
  // of 16 rows of H, so that those rows stay in cache while X streams past.
  const size_t samples = 2 * k;
  std::vector<double> x(samples * k);
  {
    std::vector<double> z(k);
    for (size_t r = 0; r < samples; ++r) {
      for (double& v : z) v = d(rng);
      for (size_t c = 0; c < k; ++c) x[r * k + c] = z[c] + 0.8 * z[(c + 1) % k];
    }
  }
  std::vector<double> h(k * k, 0.0);
  parallel_for(k, 16, threads, [&](size_t a, size_t b) {
    for (size_t r = 0; r < samples; ++r) {
      const double* xr = x.data() + r * k;
      for (size_t i = a; i < b; ++i) {
        double* hi = h.data() + i * k;
        const double xi = xr[i];
        for (size_t j = i; j < k; ++j) hi[j] += xi * xr[j];
      }
    }
  });
  std::vector<double>().swap(x);
  for (size_t i = 0; i < k; ++i)
    for (size_t j = 0; j < i; ++j) h[i * k + j] = h[j * k + i];

  const FloatSpan src{w.data(), DType::BF16, w.size()};
  float amax = 0;
  for (uint16_t v : w) amax = std::max(amax, std::fabs(BF16{v}.to_float()));
  const Nvfp4Scaling scaling = nvfp4_scaling(amax, Nvfp4Numerics::ModelOpt, DType::BF16);
  std::vector<uint8_t> packed(w.size() / 2), scales(w.size() / 16);
  nvfp4_ref::quantize(src, scaling, packed.data(), scales.data());
  const std::vector<uint8_t> plain = packed;
  const double weight_gb = static_cast<double>(w.size() * 2) / 1e9;
  std::printf("linear [%zu, %zu] BF16 (%.3f GB), XᵀX of %zu rows\n", n, k, weight_gb, samples);
  std::printf("%-10s %-8s %12s %14s %12s %10s %10s\n", "path", "threads", "factor s", "compensate s", "total s", "GB/s",
              "s per GB");
  auto print_row = [&](const char* path, const std::string& t, double factor_s, double rows_s) {
    std::printf("%-10s %-8s %12.3f %14.3f %12.3f %10.4f %10.2f\n", path, t.c_str(), factor_s, rows_s, factor_s + rows_s,
                weight_gb / (factor_s + rows_s), (factor_s + rows_s) / weight_gb);
  };
  GptqFactor f;
  std::vector<uint8_t> fast_packed;
  for (unsigned t : {1u, threads}) {
    if (t == 1 && !single_thread && threads != 1) continue;
    auto t0 = std::chrono::steady_clock::now();
    f = gptq_factor(h, k, GptqOptions{}, t);
    const double factor_s = seconds_since(t0);
    if (!f.usable) {
      std::fprintf(stderr, "gptq_bench: XᵀX not usable: %s\n", f.why.c_str());
      return 1;
    }
    t0 = std::chrono::steady_clock::now();
    parallel_for(n, kGptqRowsPerPiece, t, [&](size_t a, size_t b) {
      nvfp4_gptq_quantize_rows(src.subspan(a * k, (b - a) * k), k, scales.data() + a * k / 16, scaling, f,
                               kDefaultGptqBlock, packed.data() + a * k / 2);
    });
    print_row(preferred_isa() == Isa::Scalar ? "reference" : "fast", std::to_string(t), factor_s, seconds_since(t0));
    if (t == threads) break;
  }
  fast_packed = packed;
  if (with_gpu) {
    try {
      GptqGpu gpu;
      std::vector<uint8_t> gpu_packed(packed.size());
      std::vector<double> factor_s, rows_s;
      GptqFactor g;
      for (int run = 0; run < 4; ++run) {  // the first run loads the libraries and is not timed
        auto t0 = std::chrono::steady_clock::now();
        g = gpu.factor(h, k, GptqOptions{});
        const double fs = seconds_since(t0);
        if (!g.usable) {
          std::fprintf(stderr, "gptq_bench: XᵀX not usable on the GPU: %s\n", g.why.c_str());
          return 1;
        }
        t0 = std::chrono::steady_clock::now();
        gpu.quantize_rows(src, k, scales.data(), scaling, g, kDefaultGptqBlock, gpu_packed.data());
        const double rs = seconds_since(t0);
        if (run > 0) factor_s.push_back(fs), rows_s.push_back(rs);
      }
      std::sort(factor_s.begin(), factor_s.end());
      std::sort(rows_s.begin(), rows_s.end());
      print_row("cuda", "gpu", factor_s[1], rows_s[1]);
      const std::vector<double> u = g.usable ? gpu.factor_u() : std::vector<double>();
      double du = 0, su = 0;
      for (size_t i = 0; i < u.size(); ++i) {
        du = std::max(du, std::fabs(u[i] - f.u[i]));
        su = std::max(su, std::fabs(f.u[i]));
      }
      size_t differ = 0;
      for (size_t i = 0; i < packed.size(); ++i) {
        const unsigned bits = fast_packed[i] ^ gpu_packed[i];
        differ += (bits & 0x0F ? 1 : 0) + (bits & 0xF0 ? 1 : 0);
      }
      const std::vector<double> e =
          output_errors(w, {&plain, &fast_packed, &gpu_packed}, scales, scaling, h, n, k, threads);
      std::printf("cuda against the CPU: damping %g (CPU %g); max |ΔU| %.3g of max |U| %.3g; %.4f%% of the codes "
                  "differ; layer-output error on the XᵀX rows: plain %.5f, CPU %.5f, GPU %.5f\n",
                  g.damping, f.damping, du, su, 100.0 * static_cast<double>(differ) / static_cast<double>(2 * packed.size()),
                  e[0], e[1], e[2]);
    } catch (const Error& e) {
      std::fprintf(stderr, "gptq_bench: --gpu: %s\n", e.what());
      return 1;
    }
  }
  if (with_reference) {
    // The scalar reference on all threads: the same damped matrix, the factor and rows it gives.
    double trace = 0;
    for (size_t i = 0; i < k; ++i) trace += h[i * k + i];
    std::vector<double> damped = h;
    for (size_t i = 0; i < k; ++i) damped[i * k + i] += kDefaultGptqDamping * trace / static_cast<double>(k);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<double> u;
    const bool ok = cholesky_ref::inverse_cholesky_upper(damped, k, u, threads);
    const double factor_s = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    parallel_for(n, kGptqRowsPerPiece, threads, [&](size_t a, size_t b) {
      nvfp4_gptq_ref::quantize_rows(src.subspan(a * k, (b - a) * k), k, scales.data() + a * k / 16, scaling, f,
                                    kDefaultGptqBlock, packed.data() + a * k / 2);
    });
    print_row("reference", std::to_string(threads), factor_s, seconds_since(t0));
    std::printf("reference factor bit-identical: %s; codes identical: %s\n", ok && u == f.u ? "yes" : "NO",
                packed == fast_packed ? "yes" : "NO");
    if (!ok || u != f.u || packed != fast_packed) return 1;
  }
  return 0;
}
