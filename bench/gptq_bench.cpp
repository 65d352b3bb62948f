// Cost of GPTQ on the CPU for one linear [N, K] (BF16, max block scales): the factor of the damped
// inverse XᵀX (K³ work, once per linear) and the compensation of the rows (N·K² work), on 1 and
// on all threads, in seconds and in GB/s of BF16 weights. XᵀX comes from 2K random correlated rows.
//
// The path the library chooses (the fast one, or the reference under FP4KIT_ISA=scalar) runs on 1
// and on all threads; --reference then runs the scalar reference on all threads in the same
// process and checks that the factor and the codes are bit-identical (exit 1 if not).
//
//   gptq_bench [--rows N] [--cols K] [--threads T] [--reference]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "base/cholesky.h"
#include "base/parallel.h"
#include "formats/bf16.h"
#include "formats/isa.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_gptq.h"

using namespace fp4kit;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = 2048, k = 2048;
  unsigned threads = default_threads();
  bool with_reference = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rows" && i + 1 < argc) n = std::stoul(argv[++i]);
    else if (a == "--cols" && i + 1 < argc) k = std::stoul(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) threads = static_cast<unsigned>(std::stoul(argv[++i]));
    else if (a == "--reference") with_reference = true;
    else {
      std::fprintf(stderr, "usage: gptq_bench [--rows N] [--cols K] [--threads T] [--reference]\n");
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
  // XᵀX of 2K rows x = z + 0.8·z shifted by one channel (neighbouring channels correlated).
  std::vector<double> h(k * k, 0.0);
  std::vector<double> z(k), x(k);
  for (size_t r = 0; r < 2 * k; ++r) {
    for (double& v : z) v = d(rng);
    for (size_t c = 0; c < k; ++c) x[c] = z[c] + 0.8 * z[(c + 1) % k];
    for (size_t i = 0; i < k; ++i)
      for (size_t j = i; j < k; ++j) h[i * k + j] += x[i] * x[j];
  }
  for (size_t i = 0; i < k; ++i)
    for (size_t j = 0; j < i; ++j) h[i * k + j] = h[j * k + i];

  const FloatSpan src{w.data(), DType::BF16, w.size()};
  float amax = 0;
  for (uint16_t v : w) amax = std::max(amax, std::fabs(BF16{v}.to_float()));
  const Nvfp4Scaling scaling = nvfp4_scaling(amax, Nvfp4Numerics::ModelOpt, DType::BF16);
  std::vector<uint8_t> packed(w.size() / 2), scales(w.size() / 16);
  nvfp4_ref::quantize(src, scaling, packed.data(), scales.data());
  const double weight_gb = static_cast<double>(w.size() * 2) / 1e9;
  std::printf("linear [%zu, %zu] BF16 (%.3f GB), XᵀX of %zu rows\n", n, k, weight_gb, 2 * k);
  std::printf("%-10s %-8s %12s %14s %12s %10s %10s\n", "path", "threads", "factor s", "compensate s", "total s", "GB/s",
              "s per GB");
  auto print_row = [&](const char* path, unsigned t, double factor_s, double rows_s) {
    std::printf("%-10s %-8u %12.2f %14.2f %12.2f %10.4f %10.1f\n", path, t, factor_s, rows_s, factor_s + rows_s,
                weight_gb / (factor_s + rows_s), (factor_s + rows_s) / weight_gb);
  };
  GptqFactor f;
  std::vector<uint8_t> fast_packed;
  for (unsigned t : {1u, threads}) {
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
    print_row(preferred_isa() == Isa::Scalar ? "reference" : "fast", t, factor_s, seconds_since(t0));
    if (t == threads) break;
  }
  fast_packed = packed;
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
    print_row("reference", threads, factor_s, seconds_since(t0));
    std::printf("reference factor bit-identical: %s; codes identical: %s\n", ok && u == f.u ? "yes" : "NO",
                packed == fast_packed ? "yes" : "NO");
    if (!ok || u != f.u || packed != fast_packed) return 1;
  }
  return 0;
}
