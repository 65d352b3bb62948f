// Throughput of every block scheme's quantize and dequantize (NVFP4 also with searched block scales,
// and with hessian ones on the first 64 rows):
// scalar reference vs fast path, one thread vs all threads, in GB/s of input, next to a plain memcpy
// of the same input bytes. Each fast path's output is compared with the scalar one on the same data
// (bit-exact or the row says so).
//
//   formats_bench [--mb N] [--reps R] [--json FILE]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/parallel.h"
#include "bench_timing.h"
#include "formats/bf16.h"
#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_hessian_sweep.h"
#include "formats/nvfp4_scale_search.h"

using namespace fp4kit;
using fp4kit::bench::time_best;

namespace {

struct Row {
  std::string scheme, op, isa;
  unsigned threads;
  double input_gb, seconds;
  bool exact;
};

double gb(size_t bytes) { return static_cast<double>(bytes) / 1e9; }

// Weights like a real layer: N(0, 1) with per-row scale spread and a few heavy outliers.
std::vector<uint16_t> make_bf16(size_t n, size_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> spread(-2.0f, 2.0f);
  std::vector<uint16_t> v(n);
  float row_scale = 1.0f;
  for (size_t i = 0; i < n; ++i) {
    if (i % cols == 0) row_scale = 0.02f * std::exp2(spread(rng));
    float x = normal(rng) * row_scale;
    if (rng() % 10007 == 0) x *= 40.0f;
    v[i] = BF16::from_float(x).bits;
  }
  return v;
}

// Prepared XᵀX blocks like calibration statistics: AᵀA of 64 rows whose channels share a common
// factor and differ in size, every off-diagonal entry nonzero.
std::vector<HessianBlockWeight> make_hessian_weights(size_t blocks, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<HessianBlockWeight> out;
  for (size_t b = 0; b < blocks; ++b) {
    double scale[16], h[256] = {};
    for (double& s : scale) s = std::exp(normal(rng));
    for (int r = 0; r < 64; ++r) {
      const double common = normal(rng);
      double x[16];
      for (int i = 0; i < 16; ++i) x[i] = scale[i] * (0.6 * common + 0.8 * normal(rng));
      for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 16; ++j) h[i * 16 + j] += x[i] * x[j];
    }
    float hf[256];
    for (int i = 0; i < 256; ++i) hf[i] = static_cast<float>(h[i]);
    out.push_back(hessian_block_weight(hf, kDefaultHessianDamping));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  size_t mb = 256;
  int reps = 3;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--mb" && i + 1 < argc) mb = std::stoul(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::stoi(argv[++i]);
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else {
      std::fprintf(stderr, "usage: formats_bench [--mb N] [--reps R] [--json FILE]\n");
      return 2;
    }
  }
  const size_t cols = 7168;  // DeepSeek hidden size
  const size_t rows = std::max<size_t>(128, (mb << 20) / 2 / cols / 128 * 128);
  const size_t n = rows * cols;
  const unsigned all = default_threads();
  const std::vector<uint16_t> bf16 = make_bf16(n, cols, 1);
  const FloatSpan src{bf16.data(), DType::BF16, n};
  std::vector<Row> rows_out;
  std::vector<Isa> isas{Isa::Scalar};  // the reference, then every SIMD target this CPU runs
  for (Isa isa : simd_isas()) isas.push_back(isa);
  std::vector<unsigned> thread_counts = {1};
  if (all > 1) thread_counts.push_back(all);
  const size_t piece = size_t{1} << 18;  // elements per parallel piece (a multiple of every block size)

  // Baseline: copy of the input bytes.
  {
    std::vector<uint16_t> dst(n);
    for (unsigned t : thread_counts) {
      const double s = time_best(reps, [&] {
        parallel_for(n, piece, t, [&](size_t b, size_t e) { std::memcpy(dst.data() + b, bf16.data() + b, (e - b) * 2); });
      });
      rows_out.push_back({"memcpy", "copy", "-", t, gb(n * 2), s, true});
    }
  }

  // NVFP4 quantize (both numerics) and dequantize.
  for (auto numerics : {Nvfp4Numerics::ModelOpt, Nvfp4Numerics::CompressedTensors}) {
    const Nvfp4Scaling sc = nvfp4_scaling(nvfp4_ref::amax(src), numerics, DType::BF16);
    std::vector<uint8_t> ref_packed(n / 2), ref_scales(n / 16);
    nvfp4_kernels(Isa::Scalar).quantize(src, sc, ref_packed.data(), ref_scales.data());
    std::vector<float> ref_dq(n);
    nvfp4_kernels(Isa::Scalar).dequantize(ref_packed.data(), ref_scales.data(), n, sc, ref_dq.data());
    const std::string scheme = std::string("nvfp4/") + std::string(numerics_name(numerics));
    for (Isa isa : isas) {
      const auto& k = nvfp4_kernels(isa);
      for (unsigned t : thread_counts) {
        std::vector<uint8_t> packed(n / 2), scales(n / 16);
        double s = time_best(reps, [&] {
          parallel_for(n, piece, t, [&](size_t b, size_t e) {
            k.quantize(src.subspan(b, e - b), sc, packed.data() + b / 2, scales.data() + b / 16);
          });
        });
        rows_out.push_back({scheme, "quantize", std::string(isa_name(isa)), t, gb(n * 2), s,
                            packed == ref_packed && scales == ref_scales});
        s = time_best(reps, [&] { (void)parallel_for(n, piece, t, [&](size_t b, size_t e) { (void)k.amax(src.subspan(b, e - b)); }); });
        rows_out.push_back({scheme, "amax", std::string(isa_name(isa)), t, gb(n * 2), s, true});
        std::vector<float> dq(n);
        s = time_best(reps, [&] {
          parallel_for(n, piece, t, [&](size_t b, size_t e) {
            k.dequantize(ref_packed.data() + b / 2, ref_scales.data() + b / 16, e - b, sc, dq.data() + b);
          });
        });
        rows_out.push_back({scheme, "dequantize->f32", std::string(isa_name(isa)), t, gb(n * 9 / 16), s,
                            std::memcmp(dq.data(), ref_dq.data(), n * 4) == 0});
      }
    }
  }

  // NVFP4 with searched block scales (ModelOpt's mse and four-over-six calibrations, exported in
  // the ModelOpt-CUDA numerics): the search, the export and the elements.
  for (Nvfp4ScaleMethod method : {Nvfp4ScaleMethod::Mse, Nvfp4ScaleMethod::FourOverSix}) {
    const Nvfp4SearchScaling sc = nvfp4_search_scaling(nvfp4_ref::amax(src), method, Nvfp4Numerics::ModelOptCuda, DType::BF16);
    std::vector<uint8_t> ref_packed(n / 2), ref_scales(n / 16);
    parallel_for(n, piece, all, [&](size_t b, size_t e) {
      nvfp4_search_kernels(Isa::Scalar).quantize(src.subspan(b, e - b), sc, ref_packed.data() + b / 2, ref_scales.data() + b / 16);
    });
    const std::string scheme = "nvfp4/" + std::string(scale_method_name(method));
    for (Isa isa : isas) {
      const auto& k = nvfp4_search_kernels(isa);
      for (unsigned t : thread_counts) {
        std::vector<uint8_t> packed(n / 2), scales(n / 16);
        const double s = time_best(reps, [&] {
          parallel_for(n, piece, t, [&](size_t b, size_t e) {
            k.quantize(src.subspan(b, e - b), sc, packed.data() + b / 2, scales.data() + b / 16);
          });
        });
        rows_out.push_back({scheme, "quantize", std::string(isa_name(isa)), t, gb(n * 2), s,
                            packed == ref_packed && scales == ref_scales});
      }
    }
  }

  // NVFP4 with activation-weighted block scales (`--scales hessian`): all 126 candidates of every
  // block under a dense 16x16 weighting, on the first 64 rows only (the reference is slow).
  {
    const size_t h_rows = std::min<size_t>(rows, 64), h_n = h_rows * cols, h_piece = size_t{1} << 14;
    const FloatSpan h_src = src.subspan(0, h_n);
    const std::vector<HessianBlockWeight> weights = make_hessian_weights(cols / 16, 2);
    const HessianLayout layout{cols / 16, h_rows};
    const Nvfp4SearchScaling sc =
        nvfp4_search_scaling(nvfp4_ref::amax(src), Nvfp4ScaleMethod::Hessian, Nvfp4Numerics::ModelOptCuda, DType::BF16);
    std::vector<uint8_t> ref_packed(h_n / 2), ref_scales(h_n / 16);
    parallel_for(h_n, h_piece, all, [&](size_t b, size_t e) {
      nvfp4_hessian_kernels(Isa::Scalar).quantize(h_src.subspan(b, e - b), b / 16, weights, layout, sc,
                                                  ref_packed.data() + b / 2, ref_scales.data() + b / 16, nullptr);
    });
    for (Isa isa : isas) {
      const auto& k = nvfp4_hessian_kernels(isa);
      for (unsigned t : thread_counts) {
        std::vector<uint8_t> packed(h_n / 2), scales(h_n / 16);
        const double s = time_best(reps, [&] {
          parallel_for(h_n, h_piece, t, [&](size_t b, size_t e) {
            k.quantize(h_src.subspan(b, e - b), b / 16, weights, layout, sc, packed.data() + b / 2, scales.data() + b / 16,
                       nullptr);
          });
        });
        rows_out.push_back({"nvfp4/hessian (64 rows)", "quantize", std::string(isa_name(isa)), t, gb(h_n * 2), s,
                            packed == ref_packed && scales == ref_scales});
      }
    }
  }

  // MXFP4 (DeepSeek V4 experts): quantize from BF16, dequantize to BF16.
  {
    std::vector<uint8_t> ref_packed(n / 2), ref_scales(n / 32);
    mxfp4_ref::quantize(src, ref_packed.data(), ref_scales.data());
    std::vector<uint16_t> ref_dq(n);
    mxfp4_ref::dequantize_bf16(ref_packed.data(), ref_scales.data(), n, ref_dq.data());
    for (Isa isa : isas) {
      const auto& k = mxfp4_kernels(isa);
      for (unsigned t : thread_counts) {
        std::vector<uint8_t> packed(n / 2), scales(n / 32);
        double s = time_best(reps, [&] {
          parallel_for(n, piece, t, [&](size_t b, size_t e) {
            k.quantize(src.subspan(b, e - b), packed.data() + b / 2, scales.data() + b / 32);
          });
        });
        rows_out.push_back({"mxfp4", "quantize", std::string(isa_name(isa)), t, gb(n * 2), s,
                            packed == ref_packed && scales == ref_scales});
        std::vector<uint16_t> dq(n);
        s = time_best(reps, [&] {
          parallel_for(n, piece, t, [&](size_t b, size_t e) {
            k.dequantize_bf16(ref_packed.data() + b / 2, ref_scales.data() + b / 32, e - b, dq.data() + b);
          });
        });
        rows_out.push_back({"mxfp4", "dequantize->bf16", std::string(isa_name(isa)), t, gb(n * 17 / 32), s, dq == ref_dq});
      }
    }
  }

  // FP8 128x128 blocks with E8M0 scales (DeepSeek V4 attention): quantize from BF16, dequantize to BF16.
  {
    const Fp8BlockShape shape{rows, cols, Fp8ScaleKind::E8M0};
    std::vector<uint8_t> ref_w(n), ref_s(shape.scale_rows() * shape.scale_cols());
    fp8_block_ref::quantize(src, shape, ref_w.data(), ref_s.data());
    std::vector<uint16_t> ref_dq(n);
    fp8_block_ref::dequantize_bf16(ref_w.data(), ref_s.data(), shape, 0, rows, ref_dq.data());
    for (Isa isa : isas) {
      const auto& k = fp8_block_kernels(isa);
      std::vector<uint8_t> w(n), sc(ref_s.size());
      double s = time_best(reps, [&] { k.quantize(src, shape, w.data(), sc.data()); });
      rows_out.push_back({"fp8-block128", "quantize", std::string(isa_name(isa)), 1, gb(n * 2), s,
                          w == ref_w && sc == ref_s});
      for (unsigned t : thread_counts) {
        std::vector<uint16_t> dq(n);
        s = time_best(reps, [&] {
          parallel_for(rows, 16, t, [&](size_t b, size_t e) {
            k.dequantize_bf16(ref_w.data(), ref_s.data(), shape, b, e, dq.data() + b * cols);
          });
        });
        rows_out.push_back({"fp8-block128", "dequantize->bf16", std::string(isa_name(isa)), t, gb(n * 1), s, dq == ref_dq});
      }
    }
  }

  std::printf("input: %zu x %zu BF16 (%.0f MB), best of %d, %u hardware threads\n\n", rows, cols, gb(n * 2) * 1e3, reps, all);
  std::printf("%-26s %-18s %-7s %7s %10s %8s\n", "scheme", "op", "isa", "threads", "GB/s in", "exact");
  for (const auto& r : rows_out) {
    const double rate = r.input_gb / r.seconds;
    std::printf("%-26s %-18s %-7s %7u %10.*f %8s\n", r.scheme.c_str(), r.op.c_str(), r.isa.c_str(), r.threads,
                rate < 0.1 ? 5 : 2, rate, r.exact ? "yes" : "NO");  // the slow searches keep 2-3 digits
  }
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f) return 1;
    std::fprintf(f, "{\"rows\": %zu, \"cols\": %zu, \"threads\": %u, \"results\": [\n", rows, cols, all);
    for (size_t i = 0; i < rows_out.size(); ++i) {
      const auto& r = rows_out[i];
      std::fprintf(f, "  {\"scheme\": \"%s\", \"op\": \"%s\", \"isa\": \"%s\", \"threads\": %u, \"gb_per_s\": %.4f, \"exact\": %s}%s\n",
                   r.scheme.c_str(), r.op.c_str(), r.isa.c_str(), r.threads, r.input_gb / r.seconds, r.exact ? "true" : "false",
                   i + 1 < rows_out.size() ? "," : "");
    }
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  bool all_exact = true;
  for (const auto& r : rows_out) all_exact = all_exact && r.exact;
  return all_exact ? 0 : 1;
}
