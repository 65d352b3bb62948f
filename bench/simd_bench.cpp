// Throughput of the vector fast paths outside the block formats' quantize/dequantize (those are in
// formats_bench): the engine's f32 matmul, verify's error sums, synth's random fill and the lossless
// MXFP4 -> NVFP4 cast, per ISA on one thread, next to the scalar reference and a memcpy of the same
// bytes. Every row's output is compared with the reference's (bit-exact or the row says NO).
//
//   simd_bench [--reps R] [--json FILE]
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench_timing.h"
#include "engine/matmul.h"
#include "formats/isa.h"
#include "formats/mxfp4.h"
#include "formats/mxfp4_cast.h"
#include "synth/random_fill.h"
#include "verify/tensor_error.h"

using namespace fp4kit;
using fp4kit::bench::time_best;

namespace {

#if __has_include("formats/simd_dispatch.h")
std::vector<Isa> bench_isas() {
  std::vector<Isa> out{Isa::Scalar};
  for (Isa isa : simd_isas()) out.push_back(isa);
  return out;
}
void error_add(Isa isa, verify::TensorError& e, const float* x, const float* ref, size_t n) {
  if (auto fast = verify::tensor_error_add_kernel(isa)) return fast(e, x, ref, n);
  e.add_ref(x, ref, n);
}
#else
// A library whose only vector paths are hand-written AVX2 ones (to compare the two in one table).
std::vector<Isa> bench_isas() {
  return isa_supported(Isa::Avx2) ? std::vector<Isa>{Isa::Scalar, Isa::Avx2} : std::vector<Isa>{Isa::Scalar};
}
void error_add(Isa isa, verify::TensorError& e, const float* x, const float* ref, size_t n) {
  if (isa == Isa::Avx2) return verify::tensor_error_add_avx2(e, x, ref, n);
  e.add_ref(x, ref, n);
}
#endif

struct Row {
  std::string kernel, isa;
  double bytes, seconds;
  bool exact;
};

std::vector<float> normal_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

bool same_bytes(const void* a, const void* b, size_t n) { return std::memcmp(a, b, n) == 0; }

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) reps = std::stoi(argv[++i]);
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else {
      std::fprintf(stderr, "usage: simd_bench [--reps R] [--json FILE]\n");
      return 2;
    }
  }
  std::vector<Row> rows;
  const std::vector<Isa> isas = bench_isas();

  // memcpy of 64 MB: the machine's copy rate, for scale.
  {
    std::vector<uint8_t> a(64u << 20, 1), b(a.size());
    const double s = time_best(reps, [&] { std::memcpy(b.data(), a.data(), a.size()); });
    rows.push_back({"memcpy (64 MB)", "-", static_cast<double>(a.size()), s, true});
  }

  // matmul: 4 rows of activations against a [1024, 7168] f32 weight (bytes: the weight's).
  {
    const size_t M = 4, N = 1024, K = 7168;
    const auto x = normal_floats(M * K, 1), w = normal_floats(N * K, 2);
    std::vector<float> ref(M * N), y(M * N);
    engine::matmul_kernels(Isa::Scalar).matmul(x.data(), K, w.data(), K, ref.data(), N, M, N, K);
    for (Isa isa : isas) {
      const auto& k = engine::matmul_kernels(isa);
      const double s = time_best(reps, [&] { k.matmul(x.data(), K, w.data(), K, y.data(), N, M, N, K); });
      rows.push_back({"matmul 4x1024x7168 f32", std::string(isa_name(isa)), static_cast<double>(N * K * 4), s,
                      same_bytes(ref.data(), y.data(), y.size() * 4)});
    }
  }

  // verify's error sums over 16M value pairs (bytes: both sides).
  {
    const size_t n = size_t{16} << 20;
    const auto ref = normal_floats(n, 3);
    std::vector<float> x(ref);
    for (size_t i = 0; i < n; i += 3) x[i] += 0.01f;
    verify::TensorError expect;
    expect.add_ref(x.data(), ref.data(), n);
    for (Isa isa : isas) {
      verify::TensorError got;
      const double s = time_best(reps, [&] {
        got = verify::TensorError{};
        error_add(isa, got, x.data(), ref.data(), n);
      });
      const bool exact = got.signal() == expect.signal() && got.noise() == expect.noise() &&
                         got.max_abs == expect.max_abs && got.exact == expect.exact;
      rows.push_back({"tensor error sums", std::string(isa_name(isa)), static_cast<double>(2 * n * 4), s, exact});
    }
  }

  // synth's random fill, 16M draws of each distribution (bytes: the f32 output).
  for (synth::Distribution dist : {synth::Distribution::StudentT4, synth::Distribution::NormalApprox}) {
    const size_t n = size_t{16} << 20;
    std::vector<float> ref(n), out(n);
    const synth::CounterRng rng{0x5EED};
    synth::random_fill(Isa::Scalar)(dist, rng, 7, n, ref.data());
    for (Isa isa : isas) {
      const auto fill = synth::random_fill(isa);
      const double s = time_best(reps, [&] { fill(dist, rng, 7, n, out.data()); });
      rows.push_back({dist == synth::Distribution::StudentT4 ? "random fill student-t4" : "random fill normal",
                      std::string(isa_name(isa)), static_cast<double>(n * 4), s, same_bytes(ref.data(), out.data(), n * 4)});
    }
  }

  // The lossless MXFP4 -> NVFP4 cast of a [2048, 7168] expert weight (bytes: packed + E8M0 in).
  {
    const size_t n = size_t{2048} * 7168;
    std::mt19937_64 rng(4);
    std::vector<uint8_t> packed(n / 2), scales(n / kMxfp4BlockSize);
    for (auto& p : packed) p = static_cast<uint8_t>(rng());
    for (auto& s : scales) s = static_cast<uint8_t>(116 + rng() % 9);
    const Mxfp4CastParams params = mxfp4_cast_params(scales.data(), scales.size(), 124 - 127);
    const Mxfp4CastTable table(scales.data(), scales.size(), params);
    std::vector<uint8_t> ref_p(n / 2), ref_s(n / 16), p(n / 2), s8(n / 16);
    mxfp4_cast_kernel(Isa::Scalar)(packed.data(), scales.data(), n, table, ref_p.data(), ref_s.data());
    for (Isa isa : isas) {
      const auto cast = mxfp4_cast_kernel(isa);
      const double s = time_best(reps, [&] { cast(packed.data(), scales.data(), n, table, p.data(), s8.data()); });
      rows.push_back({"mxfp4->nvfp4 cast", std::string(isa_name(isa)), static_cast<double>(n / 2 + n / 32), s,
                      p == ref_p && s8 == ref_s});
    }
  }

  std::printf("best of %d, one thread\n\n%-26s %-8s %10s %8s\n", reps, "kernel", "isa", "GB/s", "exact");
  for (const Row& r : rows)
    std::printf("%-26s %-8s %10.2f %8s\n", r.kernel.c_str(), r.isa.c_str(), r.bytes / r.seconds / 1e9,
                r.exact ? "yes" : "NO");
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f) return 1;
    std::fprintf(f, "{\"results\": [\n");
    for (size_t i = 0; i < rows.size(); ++i)
      std::fprintf(f, "  {\"kernel\": \"%s\", \"isa\": \"%s\", \"gb_per_s\": %.4f, \"exact\": %s}%s\n",
                   rows[i].kernel.c_str(), rows[i].isa.c_str(), rows[i].bytes / rows[i].seconds / 1e9,
                   rows[i].exact ? "true" : "false", i + 1 < rows.size() ? "," : "");
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  bool all_exact = true;
  for (const Row& r : rows) all_exact = all_exact && r.exact;
  return all_exact ? 0 : 1;
}
