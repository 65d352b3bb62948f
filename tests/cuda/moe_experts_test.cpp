// The routed experts on the GPU against a CPU reference built from the CPU engine's pieces: the
// engine matmul on the CPU-dequantized weights (src/formats), the engine's silu with the same clamp,
// h rounded to BF16 where the GPU rounds it (between w1/w3 and w2; the CPU engine itself keeps h in
// F32), and the combine in the same order (increasing expert id, acc = +0, acc += y·w).
//
// Every stage is checked on its own, so one run says which one is wrong:
//  A. routing, exactly: offsets, the stable (expert, slot) order, the inverse permutation, the
//     gathered rows of x bit for bit;
//  B. h (GPU, BF16) against the reference h within its bound;
//  C. y (GPU, F32) against the CPU product of the GPU's own h with w2, within a summation bound;
//  D. the combine, bit for bit against the CPU combine of the GPU's own y;
//  E. the output against the full reference within the propagated bound.
//
// Bounds. Let u = 2^-24 and G = Σ_k |x_k w_k| for an output of a product over K terms. The CPU sum
// (8 lanes, products rounded, weights dequantized with up to two roundings) is within (K + 4)·u·G of
// the exact sum of the exact weight values; the GPU's products of BF16 values are exact and its F32
// accumulation, in any order, even truncating, is within K·4u·G, plus 4u·G for the scale
// multiplications. So |Δ| <= c(K)·G with c(K) = (K + 4)u + (K + 1)·4u. Through the clamped SwiGLU
// (min and clamp are 1-Lipschitz, |silu'| <= 1.1): |Δh_pre| <= 1.1·Δg·|u| + |silu(g)|·Δu + 1.1·Δg·Δu +
// 2^-16·|h| (the exp of either side). Rounding to BF16 is monotone, so both BF16 values lie in
// [bf16(h - Δh_pre), bf16(h + Δh_pre)]: the width of that interval bounds |Δh| (one BF16 step where the
// interval straddles a rounding boundary, else 0). Then Δy <= Σ_i Δh_i·|w2_i| + c(I)·Σ_i (|h_i| + Δh_i)·|w2_i|,
// and the combine adds Σ_j |w_j|·Δy_j plus (k + 1)·2^-23·Σ_j |w_j|(|y_j| + Δy_j) for its own roundings.
// These worst-case bounds grow with K·u·Σ|terms| while real rounding errors grow with √K (at the
// V4-Flash shape the bound exceeds |out| itself), so each stage is also held to a relative L2 error,
// over the stage (h, out: 1e-3, or 5e-3 for a BF16 output; y: 1e-4) and over each row (h, out: 1e-2,
// 2e-2 for BF16; y: 1e-3), that a wrong scale, a wrong row or a lost term exceeds. Expected: almost
// every h is bit-identical (a double-precision emulation of the GPU sums differs in ~0.1% of them,
// by one BF16 step), stage errors of 1e-6..1e-4.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/error.h"
#include "cuda/cublas_gemm.h"
#include "cuda/moe_experts.h"
#include "cuda/runtime.h"
#include "cuda/weight_gemm.h"
#include "engine/matmul.h"
#include "engine/ops.h"
#include "formats/bf16.h"
#include "formats/mxfp4.h"
#include "formats/nvfp4.h"
#include "gpu_test.h"

namespace fp4kit::cuda {
namespace {

constexpr double kU = 0x1p-24;
double sum_bound(int64_t k) {
  const double n = static_cast<double>(k);
  return (n + 4) * kU + (n + 1) * 4 * kU;
}

unsigned threads() { return std::max(1u, std::thread::hardware_concurrency()); }

const char* format_text(WeightFormat f) {
  switch (f) {
    case WeightFormat::Nvfp4: return "NVFP4";
    case WeightFormat::Mxfp4: return "MXFP4";
    case WeightFormat::Fp8Block: return "FP8";
    case WeightFormat::Bf16: return "BF16";
  }
  return "?";
}

void matmul(const std::vector<float>& x, const std::vector<float>& w, std::vector<float>& y, size_t m, size_t n,
            size_t k) {
  y.assign(m * n, 0.0f);
  engine::matmul(x.data(), w.data(), y.data(), m, n, k, threads());
}

// ---- weights ------------------------------------------------------------------------------------

// One [n, k] weight: its stored bytes and what the CPU dequantizes them to.
struct HostMatrix {
  std::vector<uint8_t> data, scales;
  float global = 1.0f;
  std::vector<float> value, magnitude;  // dequantized, and its absolute value
};

// N(0, sigma) with adversarial blocks of 32 along k: all zero, tiny (subnormal E4M3 block scales, the
// 2^-9 floor), and a few outliers that set amax.
// (Bell-shaped from a sum of four uniforms: std::normal_distribution would dominate the test's time at
// the V4-Flash shape.)
std::vector<float> random_weight(int64_t n, int64_t k, float sigma, std::mt19937_64& rng) {
  std::vector<float> v(static_cast<size_t>(n * k));
  uint64_t state = rng() | 1;
  auto uniform = [&] {  // xorshift64*, 24 bits in [0, 1)
    state ^= state >> 12, state ^= state << 25, state ^= state >> 27;
    return static_cast<float>((state * 0x2545F4914F6CDD1Dull) >> 40) * 0x1p-24f;
  };
  const float bell = sigma * std::sqrt(3.0f);  // four uniforms in [0, 1) summed have variance 1/3
  for (size_t b = 0; b < v.size(); b += 32) {
    const int kind = static_cast<int>(uniform() * 100);
    const float m = kind < 4 ? 0.0f : kind < 8 ? 1e-5f : kind < 12 ? 3e-4f : 1.0f;
    for (size_t i = b; i < b + 32; ++i)
      v[i] = (uniform() + uniform() + uniform() + uniform() - 2.0f) * bell * m;
  }
  for (int i = 0; i < 4; ++i) v[rng() % v.size()] = sigma * (rng() % 2 ? 12.0f : -12.0f);
  return v;
}

HostMatrix make_matrix(WeightFormat f, int64_t n, int64_t k, float sigma, std::mt19937_64& rng) {
  const std::vector<float> src = random_weight(n, k, sigma, rng);
  const size_t count = src.size();
  const FloatSpan span{src.data(), DType::F32, count};
  HostMatrix m;
  m.value.resize(count);
  switch (f) {
    case WeightFormat::Nvfp4: {
      const Nvfp4Kernels& kern = nvfp4_kernels();
      const Nvfp4Scaling scaling = nvfp4_scaling(kern.amax(span), Nvfp4Numerics::ModelOpt, DType::F32);
      m.global = scaling.global;
      m.data.resize(count / 2);
      m.scales.resize(count / 16);
      kern.quantize(span, scaling, m.data.data(), m.scales.data());
      kern.dequantize(m.data.data(), m.scales.data(), count, scaling, m.value.data());
      break;
    }
    case WeightFormat::Mxfp4: {
      const Mxfp4Kernels& kern = mxfp4_kernels();
      m.data.resize(count / 2);
      m.scales.resize(count / 32);
      kern.quantize(span, m.data.data(), m.scales.data());
      kern.dequantize_f32(m.data.data(), m.scales.data(), count, m.value.data());
      break;
    }
    case WeightFormat::Bf16: {
      m.data.resize(count * 2);
      for (size_t i = 0; i < count; ++i) {
        const BF16 b = BF16::from_float(src[i]);
        std::memcpy(&m.data[2 * i], &b.bits, 2);
        m.value[i] = b.to_float();
      }
      break;
    }
    case WeightFormat::Fp8Block: throw std::logic_error("FP8 block weights are not generated here");
  }
  m.magnitude.resize(count);
  for (size_t i = 0; i < count; ++i) m.magnitude[i] = std::fabs(m.value[i]);
  return m;
}

struct Layer {
  WeightFormat format;
  int32_t experts;
  int64_t hidden, inter;
  std::vector<HostMatrix> w1, w3, w2;
  std::vector<DeviceBuffer> storage;
  std::vector<GemmWeight> d1, d3, d2;  // host descriptors of the device weights
  std::unique_ptr<MoeExpertTable> table;
};

GemmWeight upload(const HostMatrix& m, WeightFormat f, int64_t n, int64_t k, std::vector<DeviceBuffer>& storage,
                  const Stream& s) {
  GemmWeight w;
  w.format = f;
  w.n = n;
  w.k = k;
  w.global_scale = m.global;
  storage.emplace_back(m.data.size(), "expert weight data");
  copy_to_device(storage.back().data(), m.data.data(), m.data.size(), s);
  w.data = storage.back().data();
  if (!m.scales.empty()) {
    storage.emplace_back(m.scales.size(), "expert weight scales");
    copy_to_device(storage.back().data(), m.scales.data(), m.scales.size(), s);
    w.scales = storage.back().data();
  }
  return w;
}

std::unique_ptr<Layer> make_layer(WeightFormat f, int32_t experts, int64_t hidden, int64_t inter, uint64_t seed) {
  auto layer = std::make_unique<Layer>();
  layer->format = f;
  layer->experts = experts;
  layer->hidden = hidden;
  layer->inter = inter;
  std::mt19937_64 rng(seed);
  // Scaled so that x·w1ᵀ and x·w3ᵀ are O(1) for x ~ N(0, 1), and y is O(1).
  const float up_sigma = 1.0f / std::sqrt(static_cast<float>(hidden));
  const float down_sigma = 2.0f / std::sqrt(static_cast<float>(inter));
  Stream s;
  std::vector<GemmWeight>& d1 = layer->d1;
  std::vector<GemmWeight>& d3 = layer->d3;
  std::vector<GemmWeight>& d2 = layer->d2;
  layer->storage.reserve(static_cast<size_t>(experts) * 6);
  for (int32_t e = 0; e < experts; ++e) {
    layer->w1.push_back(make_matrix(f, inter, hidden, up_sigma, rng));
    layer->w3.push_back(make_matrix(f, inter, hidden, up_sigma, rng));
    layer->w2.push_back(make_matrix(f, hidden, inter, down_sigma, rng));
    d1.push_back(upload(layer->w1.back(), f, inter, hidden, layer->storage, s));
    d3.push_back(upload(layer->w3.back(), f, inter, hidden, layer->storage, s));
    d2.push_back(upload(layer->w2.back(), f, hidden, inter, layer->storage, s));
  }
  s.synchronize("expert weight upload");
  layer->table = std::make_unique<MoeExpertTable>(d1, d3, d2);
  return layer;
}

// ---- routing and inputs -------------------------------------------------------------------------

enum class RoutingShape {
  Uniform,          // k distinct experts per token, uniformly
  Subset,           // only from the first third of the experts: the others get no token
  OneInEveryToken,  // every token has expert E/2 among its k
  AllOnOne,         // k = 1 and every token on expert E - 3
  Duplicates,       // some tokens name an expert twice
};

struct Routing {
  int64_t tokens = 0, top_k = 0;
  std::vector<int64_t> ids;   // [T, k]
  std::vector<float> weights; // [T, k]
};

Routing make_routing(RoutingShape shape, int64_t tokens, int64_t k, int32_t experts, bool shuffled,
                     std::mt19937_64& rng) {
  Routing r{tokens, k, std::vector<int64_t>(static_cast<size_t>(tokens * k)), std::vector<float>(static_cast<size_t>(tokens * k))};
  std::uniform_real_distribution<float> weight(0.02f, 1.5f);
  const int32_t pool = shape == RoutingShape::Subset ? std::max<int32_t>(static_cast<int32_t>(k), experts / 3) : experts;
  std::vector<int64_t> order(static_cast<size_t>(pool));
  for (int64_t t = 0; t < tokens; ++t) {
    int64_t* row = &r.ids[t * k];
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    std::copy_n(order.begin(), k, row);
    if (shape == RoutingShape::OneInEveryToken && std::find(row, row + k, experts / 2) == row + k)
      row[rng() % k] = experts / 2;
    if (shape == RoutingShape::AllOnOne) row[0] = experts - 3;
    if (shape == RoutingShape::Duplicates && t % 3 == 0 && k > 1) row[k - 1] = row[0];
    if (!shuffled) std::sort(row, row + k);
    for (int64_t j = 0; j < k; ++j) r.weights[t * k + j] = (t + j) % 11 == 5 ? 0.0f : weight(rng);
  }
  return r;
}

// x ~ N(0, 1) as BF16 with a few large entries and some -0.0.
std::vector<uint16_t> make_x(int64_t tokens, int64_t hidden, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> x(static_cast<size_t>(tokens * hidden));
  for (size_t i = 0; i < x.size(); ++i) {
    const float v = i % 97 == 13 ? normal(rng) * 12.0f : i % 89 == 7 ? -0.0f : normal(rng);
    x[i] = BF16::from_float(v).bits;
  }
  return x;
}

float bf16f(uint16_t b) { return BF16{b}.to_float(); }

// ---- the CPU reference --------------------------------------------------------------------------

struct Reference {
  float limit = 0.0f;
  std::vector<int32_t> offsets;      // [E + 1]
  std::vector<int32_t> slot_of_row;  // [R], stable by (expert, slot)
  std::vector<float> g, u;           // [R, I] before the clamp (diagnostics)
  std::vector<float> h, h_tol;       // [R, I]: BF16-rounded h and the bound on |h_gpu - h|
  std::vector<float> y, y_tol;       // [R, H]
  std::vector<float> out, out_tol;   // [T, H]
  size_t gate_clamped = 0, up_clamped = 0;
};

float outward(double v, bool up) {
  const float f = static_cast<float>(v);
  return std::nextafter(f, up ? INFINITY : -INFINITY);
}

// limit_quantile > 0: the clamp limit is that quantile of |x·w3ᵀ| over all rows (so that it is active);
// otherwise no clamp.
Reference reference(const Layer& L, const Routing& r, const std::vector<uint16_t>& x, double limit_quantile) {
  const int64_t H = L.hidden, I = L.inter, k = r.top_k;
  const int64_t R = r.tokens * k;
  Reference ref;
  ref.slot_of_row.resize(static_cast<size_t>(R));
  std::iota(ref.slot_of_row.begin(), ref.slot_of_row.end(), 0);
  std::stable_sort(ref.slot_of_row.begin(), ref.slot_of_row.end(),
                   [&](int32_t a, int32_t b) { return r.ids[a] < r.ids[b]; });
  ref.offsets.assign(static_cast<size_t>(L.experts + 1), 0);
  for (int64_t id : r.ids) ++ref.offsets[id + 1];
  for (int32_t e = 0; e < L.experts; ++e) ref.offsets[e + 1] += ref.offsets[e];

  std::vector<float> G(static_cast<size_t>(R * I)), U(G.size());
  ref.g.resize(G.size());
  ref.u.resize(G.size());
  std::vector<float> xe, ax, tmp;
  for (int32_t e = 0; e < L.experts; ++e) {
    const int64_t b = ref.offsets[e], n = ref.offsets[e + 1] - b;
    if (n == 0) continue;
    xe.resize(static_cast<size_t>(n * H));
    ax.resize(xe.size());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < H; ++c) {
        xe[i * H + c] = bf16f(x[(ref.slot_of_row[b + i] / k) * H + c]);
        ax[i * H + c] = std::fabs(xe[i * H + c]);
      }
    auto put = [&](std::vector<float>& dst) { std::copy(tmp.begin(), tmp.end(), dst.begin() + b * I); };
    matmul(xe, L.w1[e].value, tmp, n, I, H), put(ref.g);
    matmul(xe, L.w3[e].value, tmp, n, I, H), put(ref.u);
    matmul(ax, L.w1[e].magnitude, tmp, n, I, H), put(G);
    matmul(ax, L.w3[e].magnitude, tmp, n, I, H), put(U);
  }
  if (limit_quantile > 0 && R > 0) {
    std::vector<float> mag(ref.u.size());
    for (size_t i = 0; i < mag.size(); ++i) mag[i] = std::fabs(ref.u[i]);
    const size_t q = static_cast<size_t>(limit_quantile * static_cast<double>(mag.size() - 1));
    std::nth_element(mag.begin(), mag.begin() + q, mag.end());
    ref.limit = mag[q];
  }
  const float lim = ref.limit;
  ref.h.resize(G.size());
  ref.h_tol.resize(G.size());
  const double cH = sum_bound(H);
  for (size_t i = 0; i < G.size(); ++i) {
    float gc = ref.g[i], uc = ref.u[i];
    if (lim > 0) {
      ref.gate_clamped += gc > lim;
      ref.up_clamped += std::fabs(uc) > lim;
      gc = std::min(gc, lim);
      uc = std::clamp(uc, -lim, lim);
    }
    const float sg = engine::silu(gc);
    const float pre = sg * uc;
    const double tg = cH * G[i], tu = cH * U[i];
    const double tol = 1.1 * tg * std::fabs(uc) + std::fabs(sg) * tu + 1.1 * tg * tu + 0x1p-16 * std::fabs(pre) + 1e-30;
    ref.h[i] = round_to_bf16(pre);
    const float hi = round_to_bf16(outward(pre + tol, true)), lo = round_to_bf16(outward(pre - tol, false));
    ref.h_tol[i] = std::max(hi - ref.h[i], ref.h[i] - lo);
  }

  ref.y.assign(static_cast<size_t>(R * H), 0.0f);
  ref.y_tol.assign(ref.y.size(), 0.0f);
  const double cI = sum_bound(I);
  std::vector<float> he, ahe, te, sum_abs, sum_tol;
  for (int32_t e = 0; e < L.experts; ++e) {
    const int64_t b = ref.offsets[e], n = ref.offsets[e + 1] - b;
    if (n == 0) continue;
    he.assign(ref.h.begin() + b * I, ref.h.begin() + (b + n) * I);
    te.assign(ref.h_tol.begin() + b * I, ref.h_tol.begin() + (b + n) * I);
    ahe.resize(he.size());
    for (size_t i = 0; i < he.size(); ++i) ahe[i] = std::fabs(he[i]) + te[i];
    matmul(he, L.w2[e].value, tmp, n, H, I);
    std::copy(tmp.begin(), tmp.end(), ref.y.begin() + b * H);
    matmul(ahe, L.w2[e].magnitude, sum_abs, n, H, I);
    matmul(te, L.w2[e].magnitude, sum_tol, n, H, I);
    for (int64_t i = 0; i < n * H; ++i)
      ref.y_tol[b * H + i] = static_cast<float>(sum_tol[i] * (1 + 0x1p-20) + cI * sum_abs[i]);
  }

  // Combine: each token's rows in increasing row (= expert id, then slot).
  std::vector<int32_t> row_of_slot(static_cast<size_t>(R));
  for (int64_t p = 0; p < R; ++p) row_of_slot[ref.slot_of_row[p]] = static_cast<int32_t>(p);
  ref.out.assign(static_cast<size_t>(r.tokens * H), 0.0f);
  ref.out_tol.assign(ref.out.size(), 0.0f);
  std::vector<std::pair<int32_t, float>> rows(static_cast<size_t>(k));
  for (int64_t t = 0; t < r.tokens; ++t) {
    for (int64_t j = 0; j < k; ++j) rows[j] = {row_of_slot[t * k + j], r.weights[t * k + j]};
    std::sort(rows.begin(), rows.end());
    for (int64_t c = 0; c < H; ++c) {
      float acc = 0.0f;
      double prop = 0, mag = 0;
      for (const auto& [p, w] : rows) {
        const float yv = ref.y[p * H + c];
        acc += yv * w;
        prop += std::fabs(w) * ref.y_tol[p * H + c];
        mag += std::fabs(w) * (std::fabs(yv) + ref.y_tol[p * H + c]);
      }
      ref.out[t * H + c] = acc;
      ref.out_tol[t * H + c] = static_cast<float>(prop * (1 + 0x1p-20) + static_cast<double>(k + 1) * 0x1p-23 * mag + 1e-30);
    }
  }
  return ref;
}

// ---- comparing ----------------------------------------------------------------------------------

// Counts failures and keeps the first few descriptions.
class Failures {
 public:
  explicit Failures(std::string what) : what_(std::move(what)) {}
  size_t count = 0;
  void add(const std::string& line) {
    if (count++ < 8) first_ << "\n  " << line;
  }
  std::string report() const { return what_ + ": " + std::to_string(count) + " mismatches; first:" + first_.str(); }

 private:
  std::string what_;
  std::ostringstream first_;
};

// ||got - want|| / ||want|| over a stage.
struct RelativeL2 {
  double diff = 0, ref = 0;
  void add(double got, double want) { diff += (got - want) * (got - want), ref += want * want; }
  double value() const { return std::sqrt(diff / std::max(ref, 1e-300)); }
};

// The worst relative L2 error over the rows of a [rows, cols] stage (a wrong row drowned in a
// large stage still shows here), as {error, row}. Rows whose reference is near zero are measured
// against a thousandth of the typical row.
std::pair<double, int64_t> worst_row(const std::vector<float>& got, const std::vector<float>& want, int64_t rows,
                                     int64_t cols) {
  double total = 0;
  for (float w : want) total += static_cast<double>(w) * w;
  const double floor = 1e-3 * std::sqrt(total / static_cast<double>(std::max<int64_t>(rows, 1)));
  std::pair<double, int64_t> worst{0.0, -1};
  for (int64_t r = 0; r < rows; ++r) {
    RelativeL2 l2;
    for (int64_t c = 0; c < cols; ++c) l2.add(got[r * cols + c], want[r * cols + c]);
    const double e = std::sqrt(l2.diff) / (std::sqrt(l2.ref) + floor + 1e-300);
    if (!(e <= worst.first)) worst = {e, r};
  }
  return worst;
}

std::string fmt(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

template <class T>
std::vector<T> read(const T* device, size_t count, const Stream& s) {
  return testing::read_back<T>(device, count, s);
}

struct Case {
  std::string name;
  WeightFormat format;
  int32_t experts;
  int64_t tokens, top_k, hidden, inter;
  RoutingShape shape;
  bool shuffled;
  double limit_quantile;  // 0: no clamp
  bool ids64;
  GemmOutput out;
  bool decoded = false;  // stages 2 and 3 through moe_expert_products_decoded (cuBLASLt)
};

std::ostream& operator<<(std::ostream& o, const Case& c) { return o << c.name; }

std::string shape_text(const Case& c, const Reference& ref) {
  return std::string(format_text(c.format)) + " E=" + std::to_string(c.experts) + " T=" + std::to_string(c.tokens) +
         " k=" + std::to_string(c.top_k) + " H=" + std::to_string(c.hidden) + " I=" + std::to_string(c.inter) +
         " limit=" + fmt(ref.limit) + (c.out == GemmOutput::F32 ? " out=F32" : " out=BF16");
}

// Runs one case on `ws` (already sized) and checks stages A-E.
void run_case(const Case& c, const Layer& L, MoeWorkspace& ws, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const Routing r = make_routing(c.shape, c.tokens, c.top_k, c.experts, c.shuffled, rng);
  const std::vector<uint16_t> x = make_x(c.tokens, c.hidden, rng);
  const Reference ref = reference(L, r, x, c.limit_quantile);
  const std::string shape = shape_text(c, ref);
  const int64_t H = c.hidden, I = c.inter, k = c.top_k, T = c.tokens, R = T * k;
  if (c.limit_quantile > 0) {
    EXPECT_GT(ref.gate_clamped, static_cast<size_t>(R * I / 20)) << shape << ": the gate clamp should be active";
    EXPECT_GT(ref.up_clamped, static_cast<size_t>(R * I / 20)) << shape << ": the up clamp should be active";
  }

  Stream s;
  DeviceBuffer d_x(x.size() * 2, "x"), d_w(r.weights.size() * 4, "routing weights");
  DeviceBuffer d_ids(r.ids.size() * (c.ids64 ? 8 : 4), "routing ids");
  const size_t out_bytes = static_cast<size_t>(T * H) * (c.out == GemmOutput::F32 ? 4 : 2);
  DeviceBuffer d_out(out_bytes, "out");
  copy_to_device(d_x.data(), x.data(), d_x.bytes(), s);
  copy_to_device(d_w.data(), r.weights.data(), d_w.bytes(), s);
  std::vector<int32_t> ids32(r.ids.begin(), r.ids.end());
  copy_to_device(d_ids.data(), c.ids64 ? static_cast<const void*>(r.ids.data()) : ids32.data(), d_ids.bytes(), s);
  MoeRouting routing;
  if (c.ids64) routing.experts_i64 = d_ids.data<int64_t>();
  else routing.experts_i32 = d_ids.data<int32_t>();
  routing.weights = d_w.data<float>();
  routing.tokens = T;
  routing.top_k = k;

  ws.poison(s.get());
  fill_bytes(d_out.data(), 0xFF, out_bytes, s);
  if (c.decoded) {
    moe_route_rows(d_x.data<uint16_t>(), routing, ws, s.get());
    const auto offsets = read(ws.expert_offsets(), static_cast<size_t>(c.experts + 1), s);
    CublasGemm gemm;
    ASSERT_TRUE(moe_expert_products_decoded(L.d1, L.d3, L.d2, offsets, ref.limit, ws, gemm, s.get())) << shape;
    moe_combine(routing, ws, d_out.data(), c.out, s.get());
    s.synchronize("decoded routed experts");
    ws.throw_if_bad_routing();
  } else {
    moe_routed_experts(d_x.data<uint16_t>(), routing, L.table->view(), ref.limit, d_out.data(), c.out, ws, s.get());
  }

  // A. routing, exactly.
  {
    const auto offsets = read(ws.expert_offsets(), static_cast<size_t>(c.experts + 1), s);
    const auto slots = read(ws.slot_of_row(), static_cast<size_t>(R), s);
    const auto rows = read(ws.row_of_slot(), static_cast<size_t>(R), s);
    const auto keys = read(ws.sorted_experts(), static_cast<size_t>(R), s);
    const auto sx = read(ws.sorted_x(), static_cast<size_t>(R * H), s);
    Failures f{"routing [" + shape + "]"};
    for (int32_t e = 0; e <= c.experts; ++e)
      if (offsets[e] != ref.offsets[e])
        f.add("offsets[" + std::to_string(e) + "] = " + std::to_string(offsets[e]) + ", expected " +
              std::to_string(ref.offsets[e]));
    for (int64_t p = 0; p < R; ++p) {
      const int32_t slot = ref.slot_of_row[p];
      if (slots[p] != slot)
        f.add("row " + std::to_string(p) + " holds slot " + std::to_string(slots[p]) + ", expected slot " +
              std::to_string(slot) + " (token " + std::to_string(slot / k) + ", expert " + std::to_string(r.ids[slot]) + ")");
      if (keys[p] != r.ids[slot])
        f.add("row " + std::to_string(p) + " key " + std::to_string(keys[p]) + ", expected expert " + std::to_string(r.ids[slot]));
      if (rows[slot] != p)
        f.add("row_of_slot[" + std::to_string(slot) + "] = " + std::to_string(rows[slot]) + ", expected " + std::to_string(p));
      if (std::memcmp(&sx[p * H], &x[(slot / k) * H], static_cast<size_t>(H) * 2) != 0)
        f.add("sorted x row " + std::to_string(p) + " differs from x row " + std::to_string(slot / k));
    }
    EXPECT_EQ(f.count, 0u) << f.report();
    if (f.count) return;  // the later stages would only repeat it
  }

  // B. h against the reference.
  const auto h_bits = read(ws.hidden_act(), static_cast<size_t>(R * I), s);
  {
    Failures f{"h = silu(min(x·w1ᵀ, limit)) * clamp(x·w3ᵀ) as BF16 [" + shape + "]"};
    RelativeL2 l2;
    size_t differ = 0;
    std::vector<float> h_got(h_bits.size());
    for (size_t i = 0; i < h_bits.size(); ++i) h_got[i] = bf16f(h_bits[i]);
    for (int64_t p = 0; p < R; ++p)
      for (int64_t i = 0; i < I; ++i) {
        const size_t at = static_cast<size_t>(p * I + i);
        const float got = bf16f(h_bits[at]);
        l2.add(got, ref.h[at]);
        differ += got != ref.h[at];
        if (std::isnan(got) || !(std::fabs(got - ref.h[at]) <= ref.h_tol[at])) {
          const int32_t slot = ref.slot_of_row[p];
          f.add("row " + std::to_string(p) + " (token " + std::to_string(slot / k) + " slot " + std::to_string(slot % k) +
                " expert " + std::to_string(r.ids[slot]) + ") col " + std::to_string(i) + ": g=" + fmt(ref.g[at]) +
                " u=" + fmt(ref.u[at]) + " expected " + fmt(ref.h[at]) + " ± " + fmt(ref.h_tol[at]) + ", got " + fmt(got));
        }
      }
    EXPECT_EQ(f.count, 0u) << f.report();
    std::printf("[%s] h: %zu of %lld differ from the reference, relative L2 %.3g\n", shape.c_str(), differ,
                static_cast<long long>(R * I), l2.value());
    EXPECT_LE(l2.value(), 1e-3) << shape << ": h, relative L2 error";
    const auto [row_err, row] = worst_row(h_got, ref.h, R, I);
    EXPECT_LE(row_err, 1e-2) << shape << ": h row " << row << " (token " << ref.slot_of_row[row] / k << " expert "
                             << r.ids[ref.slot_of_row[row]] << "), relative L2 error";
  }

  // C. y against the CPU product of the GPU's own h (isolates the w2 product).
  const auto y = read(ws.expert_out(), static_cast<size_t>(R * H), s);
  {
    Failures f{"y = h·w2ᵀ from the GPU's h [" + shape + "]"};
    RelativeL2 l2;
    std::vector<float> he, ahe, want, bound, y_want(y.size());
    const double cI = sum_bound(I);
    for (int32_t e = 0; e < c.experts; ++e) {
      const int64_t b = ref.offsets[e], n = ref.offsets[e + 1] - b;
      if (n == 0) continue;
      he.resize(static_cast<size_t>(n * I));
      ahe.resize(he.size());
      for (size_t i = 0; i < he.size(); ++i) {
        he[i] = bf16f(h_bits[b * I + i]);
        ahe[i] = std::fabs(he[i]);
      }
      matmul(he, L.w2[e].value, want, n, H, I);
      matmul(ahe, L.w2[e].magnitude, bound, n, H, I);
      for (int64_t i = 0; i < n * H; ++i) {
        const float got = y[b * H + i];
        const double tol = cI * bound[i] + 1e-30;
        l2.add(got, want[i]);
        y_want[b * H + i] = want[i];
        if (std::isnan(got) || !(std::fabs(got - want[i]) <= tol))
          f.add("row " + std::to_string(b + i / H) + " (expert " + std::to_string(e) + ") col " + std::to_string(i % H) +
                ": expected " + fmt(want[i]) + " ± " + fmt(tol) + ", got " + fmt(got));
      }
    }
    EXPECT_EQ(f.count, 0u) << f.report();
    EXPECT_LE(l2.value(), 1e-4) << shape << ": y, relative L2 error";
    const auto [row_err, row] = worst_row(y, y_want, R, H);
    EXPECT_LE(row_err, 1e-3) << shape << ": y row " << row << ", relative L2 error";
  }

  // D. the combine, bit for bit from the GPU's own y; E. the output against the reference.
  std::vector<float> out(static_cast<size_t>(T * H));
  if (c.out == GemmOutput::F32) {
    out = read(static_cast<const float*>(d_out.data()), out.size(), s);
  } else {
    const auto bits = read(static_cast<const uint16_t*>(d_out.data()), out.size(), s);
    for (size_t i = 0; i < out.size(); ++i) out[i] = bf16f(bits[i]);
  }
  std::vector<float> sums(static_cast<size_t>(T * H));  // the combine's F32 sums, for F
  {
    Failures fd{"combine (bit for bit from the GPU's y) [" + shape + "]"};
    Failures fe{"output against the reference [" + shape + "]"};
    RelativeL2 l2;
    std::vector<std::pair<int32_t, float>> rows(static_cast<size_t>(k));
    std::vector<int32_t> row_of_slot(static_cast<size_t>(R));
    for (int64_t p = 0; p < R; ++p) row_of_slot[ref.slot_of_row[p]] = static_cast<int32_t>(p);
    for (int64_t t = 0; t < T; ++t) {
      std::string experts_text;
      for (int64_t j = 0; j < k; ++j) {
        rows[j] = {row_of_slot[t * k + j], r.weights[t * k + j]};
        experts_text += (j ? "," : "") + std::to_string(r.ids[t * k + j]) + "@" + fmt(r.weights[t * k + j]);
      }
      std::sort(rows.begin(), rows.end());
      for (int64_t col = 0; col < H; ++col) {
        float acc = 0.0f;
        for (const auto& [p, w] : rows) acc += y[p * H + col] * w;
        sums[static_cast<size_t>(t * H + col)] = acc;
        const float want = c.out == GemmOutput::F32 ? acc : round_to_bf16(acc);
        const float got = out[t * H + col];
        uint32_t a, b;
        std::memcpy(&a, &want, 4);
        std::memcpy(&b, &got, 4);
        if (a != b)
          fd.add("token " + std::to_string(t) + " col " + std::to_string(col) + " (experts " + experts_text +
                 "): expected " + fmt(want) + ", got " + fmt(got));
        const size_t at = static_cast<size_t>(t * H + col);
        const double tol = ref.out_tol[at];
        l2.add(got, ref.out[at]);
        float lo = outward(ref.out[at] - tol, false), hi = outward(ref.out[at] + tol, true);
        if (c.out == GemmOutput::Bf16) lo = round_to_bf16(lo), hi = round_to_bf16(hi);
        if (std::isnan(got) || !(got >= lo && got <= hi))
          fe.add("token " + std::to_string(t) + " col " + std::to_string(col) + " (experts " + experts_text +
                 "): expected " + fmt(ref.out[at]) + " ± " + fmt(tol) + ", got " + fmt(got));
      }
    }
    EXPECT_EQ(fd.count, 0u) << fd.report();
    EXPECT_EQ(fe.count, 0u) << fe.report();
    double tol_sum = 0, out_sum = 0;
    for (size_t i = 0; i < ref.out.size(); ++i) tol_sum += ref.out_tol[i], out_sum += std::fabs(ref.out[i]);
    const double n = static_cast<double>(std::max<size_t>(ref.out.size(), 1));
    std::printf("[%s] out: relative L2 %.3g; mean |out| %.4g, mean bound %.3g\n", shape.c_str(), l2.value(),
                out_sum / n, tol_sum / n);
    EXPECT_LE(l2.value(), c.out == GemmOutput::F32 ? 1e-3 : 5e-3) << shape << ": output, relative L2 error";
    const auto [row_err, row] = worst_row(out, ref.out, T, H);
    EXPECT_LE(row_err, c.out == GemmOutput::F32 ? 1e-2 : 2e-2) << shape << ": output token " << row
                                                                << ", relative L2 error";
  }

  // F. the combine with a term added (the shared expert's output): each sum plus it, one F32
  // addition before the output's rounding, bit for bit; an infinite term stays infinite.
  if (T > 0) {
    std::vector<float> add(static_cast<size_t>(T * H));
    std::mt19937 gen(99);
    std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
    for (float& v : add) v = dist(gen);
    add[0] = std::numeric_limits<float>::infinity();
    DeviceBuffer d_add(add.size() * 4, "added term"), d_out2(out_bytes, "out with the added term");
    copy_to_device(d_add.data(), add.data(), d_add.bytes(), s);
    moe_combine(routing, ws, d_out2.data(), c.out, s.get(), d_add.data<float>());
    std::vector<float> got(add.size());
    if (c.out == GemmOutput::F32) {
      got = read(static_cast<const float*>(d_out2.data()), got.size(), s);
    } else {
      const auto bits = read(static_cast<const uint16_t*>(d_out2.data()), got.size(), s);
      for (size_t i = 0; i < got.size(); ++i) got[i] = bf16f(bits[i]);
    }
    size_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const float sum = sums[i] + add[i];
      const float want = c.out == GemmOutput::F32 ? sum : round_to_bf16(sum);
      uint32_t a, b;
      std::memcpy(&a, &want, 4);
      std::memcpy(&b, &got[i], 4);
      if (a != b && ++differ <= 5) ADD_FAILURE() << shape << " [" << i << "]: " << fmt(got[i]) << ", expected " << fmt(want);
    }
    EXPECT_EQ(differ, 0u) << shape << ": the combine with an added term";
  }
}

class CudaMoeExperts : public ::testing::TestWithParam<Case> {};

TEST_P(CudaMoeExperts, MatchesTheCpuReferenceStageByStage) {
  FP4KIT_REQUIRE_GPU();
  const Case& c = GetParam();
  const auto layer = make_layer(c.format, c.experts, c.hidden, c.inter, 1000 + c.experts);
  MoeWorkspace ws(c.tokens + 3, c.top_k, c.experts, c.hidden, c.inter);
  run_case(c, *layer, ws, 77 + c.tokens);
}

using F = WeightFormat;
using S = RoutingShape;
const GemmOutput kF32 = GemmOutput::F32, kBf16 = GemmOutput::Bf16;

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaMoeExperts,
    ::testing::Values(
        Case{"Nvfp4_T1_E16", F::Nvfp4, 16, 1, 6, 256, 128, S::Uniform, false, 0.6, true, kF32},
        Case{"Nvfp4_T8_E64_Unsorted_Bf16Out", F::Nvfp4, 64, 8, 6, 256, 128, S::Uniform, true, 0.6, false, kBf16},
        Case{"Nvfp4_T300_E64_EmptyExperts", F::Nvfp4, 64, 300, 6, 256, 128, S::Subset, true, 0.6, true, kF32},
        Case{"Nvfp4_T300_E16_OneExpertInEveryToken", F::Nvfp4, 16, 300, 6, 256, 128, S::OneInEveryToken, false, 0.6,
             false, kBf16},
        Case{"Nvfp4_T37_E16_AllTokensOnOneExpert", F::Nvfp4, 16, 37, 1, 256, 128, S::AllOnOne, false, 0.6, false, kF32},
        Case{"Nvfp4_T20_E16_DuplicateExperts", F::Nvfp4, 16, 20, 6, 256, 128, S::Duplicates, true, 0.6, true, kF32},
        Case{"Nvfp4_T8_E384", F::Nvfp4, 384, 8, 6, 256, 128, S::Uniform, true, 0.6, false, kF32},
        Case{"Nvfp4_T300_NoClamp", F::Nvfp4, 32, 300, 6, 256, 128, S::Uniform, true, 0.0, false, kF32},
        Case{"Mxfp4_T1_E16", F::Mxfp4, 16, 1, 6, 256, 128, S::Uniform, false, 0.6, false, kF32},
        Case{"Mxfp4_T8_E64_Unsorted", F::Mxfp4, 64, 8, 6, 256, 128, S::Uniform, true, 0.6, true, kBf16},
        Case{"Mxfp4_T300_E64_EmptyExperts", F::Mxfp4, 64, 300, 6, 256, 128, S::Subset, true, 0.6, false, kF32},
        Case{"Mxfp4_T300_E32_OneExpertInEveryToken", F::Mxfp4, 32, 300, 6, 256, 128, S::OneInEveryToken, true, 0.6,
             true, kF32},
        Case{"Mxfp4_T37_E16_AllTokensOnOneExpert", F::Mxfp4, 16, 37, 1, 256, 128, S::AllOnOne, false, 0.6, true, kBf16},
        Case{"Bf16_T8_E16", F::Bf16, 16, 8, 6, 256, 128, S::Uniform, true, 0.6, false, kF32},
        Case{"Nvfp4_FlashShape_T8_E4", F::Nvfp4, 4, 8, 2, 4096, 2048, S::Uniform, true, 0.6, false, kF32},
        Case{"Mxfp4_FlashShape_T8_E4", F::Mxfp4, 4, 8, 2, 4096, 2048, S::Uniform, true, 0.6, true, kBf16},
        // Stages 2 and 3 on weights decoded to BF16 and multiplied by cuBLASLt (large batches).
        Case{"Decoded_Mxfp4_T300_E64_EmptyExperts", F::Mxfp4, 64, 300, 6, 256, 128, S::Subset, true, 0.6, false, kF32, true},
        Case{"Decoded_Mxfp4_T37_E16_AllTokensOnOneExpert", F::Mxfp4, 16, 37, 1, 256, 128, S::AllOnOne, false, 0.6, true,
             kBf16, true},
        Case{"Decoded_Mxfp4_T20_E16_DuplicateExperts", F::Mxfp4, 16, 20, 6, 256, 128, S::Duplicates, true, 0.6, true, kF32,
             true},
        Case{"Decoded_Bf16_T300_E16", F::Bf16, 16, 300, 6, 256, 128, S::Uniform, true, 0.6, false, kF32, true},
        Case{"Decoded_Nvfp4_T300_E64_EmptyExperts", F::Nvfp4, 64, 300, 6, 256, 128, S::Subset, true, 0.6, false, kF32, true},
        Case{"Decoded_Nvfp4_T37_E16_AllTokensOnOneExpert", F::Nvfp4, 16, 37, 1, 256, 128, S::AllOnOne, false, 0.6, true,
             kBf16, true},
        Case{"Decoded_Nvfp4_FlashShape_T64_E4", F::Nvfp4, 4, 64, 2, 4096, 2048, S::Uniform, true, 0.6, false, kF32, true},
        Case{"Decoded_Mxfp4_FlashShape_T64_E4", F::Mxfp4, 4, 64, 2, 4096, 2048, S::Uniform, true, 0.6, false, kF32, true}),
    [](const ::testing::TestParamInfo<Case>& param) { return param.param.name; });

// One workspace through calls of different sizes: nothing of a longer call may leak into a shorter one.
TEST(CudaMoeExpertsWorkspace, ReusedAcrossTokenCounts) {
  FP4KIT_REQUIRE_GPU();
  const auto layer = make_layer(F::Nvfp4, 32, 256, 128, 5);
  MoeWorkspace ws(300, 6, 32, 256, 128);
  for (int64_t tokens : {300, 1, 8, 0, 299}) {
    SCOPED_TRACE("T=" + std::to_string(tokens));
    if (tokens == 0) {
      Stream s;
      MoeRouting none;
      none.experts_i32 = reinterpret_cast<const int32_t*>(ws.expert_offsets());  // never read
      none.top_k = 6;
      moe_routed_experts(nullptr, none, layer->table->view(), 1.0f, nullptr, kF32, ws, s.get());
      const auto offsets = read(ws.expert_offsets(), 33, s);
      for (int32_t v : offsets) EXPECT_EQ(v, 0);
      continue;
    }
    run_case(Case{"reuse", F::Nvfp4, 32, tokens, 6, 256, 128, S::Uniform, true, 0.6, tokens % 2 == 0, kF32}, *layer, ws,
             tokens);
  }
}

// The observer's per-expert amax (moe_expert_input_amax) against the same maxima taken on the host
// from the workspace's intermediates: exact (maxima of BF16 values, one F32 product per row), NaN
// where a row holds one, 0 for experts without rows.
TEST(CudaMoeExpertsObserver, ExpertInputAmaxMatchesTheIntermediates) {
  FP4KIT_REQUIRE_GPU();
  const int32_t E = 24;
  const int64_t T = 40, k = 4, H = 256, I = 128;
  const auto layer = make_layer(F::Nvfp4, E, H, I, 21);
  std::mt19937_64 rng(8);
  const Routing r = make_routing(S::Subset, T, k, E, true, rng);
  std::vector<uint16_t> hx = make_x(T, H, rng);
  hx[static_cast<size_t>(5 * H + 17)] = 0x7FC0;  // a NaN in token 5
  Stream s;
  DeviceBuffer x(hx.size() * 2, "x"), w(r.weights.size() * 4, "weights"), ids(r.ids.size() * 8, "ids"), out(T * H * 4, "out");
  copy_to_device(x.data(), hx.data(), x.bytes(), s);
  copy_to_device(w.data(), r.weights.data(), w.bytes(), s);
  copy_to_device(ids.data(), r.ids.data(), ids.bytes(), s);
  MoeWorkspace ws(T, k, E, H, I);
  MoeRouting mr;
  mr.experts_i64 = ids.data<int64_t>(), mr.weights = w.data<float>(), mr.tokens = T, mr.top_k = k;
  moe_routed_experts(x.data<uint16_t>(), mr, layer->table->view(), 7.0f, out.data(), kF32, ws, s.get());
  DeviceBuffer amax(4 * E * 4, "amax"), scratch(T * k * 4, "scratch");
  moe_expert_input_amax(ws, mr, MoeExpertInput::Gate, amax.data<float>(), scratch.data<float>(), s.get());
  moe_expert_input_amax(ws, mr, MoeExpertInput::Down, amax.data<float>() + 2 * E, scratch.data<float>(), s.get());
  const auto got = read(amax.data<float>(), static_cast<size_t>(4 * E), s);
  const auto offsets = read(ws.expert_offsets(), static_cast<size_t>(E + 1), s);
  const auto slot = read(ws.slot_of_row(), static_cast<size_t>(T * k), s);
  const auto sx = read(ws.sorted_x(), static_cast<size_t>(T * k * H), s);
  const auto h = read(ws.hidden_act(), static_cast<size_t>(T * k * I), s);
  int nan_experts = 0, empty_experts = 0;
  for (int which = 0; which < 2; ++which) {
    const std::vector<uint16_t>& v = which == 0 ? sx : h;
    const int64_t cols = which == 0 ? H : I;
    for (int32_t e = 0; e < E; ++e) {
      float m = 0.0f, wm = 0.0f;
      bool nan = false;
      for (int32_t row = offsets[static_cast<size_t>(e)]; row < offsets[static_cast<size_t>(e + 1)]; ++row) {
        float rm = 0.0f;
        for (int64_t c = 0; c < cols; ++c) {
          const float a = std::fabs(bf16f(v[static_cast<size_t>(row * cols + c)]));
          nan |= std::isnan(a);
          rm = std::max(rm, a);
        }
        m = std::max(m, rm);
        wm = std::max(wm, std::fabs(r.weights[static_cast<size_t>(slot[static_cast<size_t>(row)])] * rm));
      }
      const float gm = got[static_cast<size_t>(2 * (which * E + e))], gw = got[static_cast<size_t>(2 * (which * E + e) + 1)];
      SCOPED_TRACE((which == 0 ? "gate input, expert " : "down input, expert ") + std::to_string(e));
      if (nan) {
        ++nan_experts;
        EXPECT_TRUE(std::isnan(gm));
        EXPECT_TRUE(std::isnan(gw));
        continue;
      }
      if (offsets[static_cast<size_t>(e)] == offsets[static_cast<size_t>(e + 1)]) ++empty_experts;
      EXPECT_EQ(gm, m);
      EXPECT_EQ(gw, wm);
    }
  }
  EXPECT_GT(nan_experts, 0);    // the NaN reached the maxima of token 5's experts
  EXPECT_GT(empty_experts, 0);  // the subset routing leaves experts without rows: their maxima are 0
}

// ---- bad input -------------------------------------------------------------------------------

struct SmallProblem {
  std::unique_ptr<Layer> layer = make_layer(F::Nvfp4, 16, 256, 128, 9);
  Stream s;
  DeviceBuffer x{8 * 256 * 2, "x"}, w{8 * 6 * 4, "weights"}, ids{8 * 6 * 8, "ids"}, out{8 * 256 * 4, "out"};
  std::vector<int64_t> host_ids;

  SmallProblem() {
    std::mt19937_64 rng(3);
    const Routing r = make_routing(S::Uniform, 8, 6, 16, false, rng);
    host_ids = r.ids;
    const std::vector<uint16_t> hx = make_x(8, 256, rng);
    copy_to_device(x.data(), hx.data(), x.bytes(), s);
    copy_to_device(w.data(), r.weights.data(), w.bytes(), s);
    s.synchronize("test input upload");
  }
  MoeRouting routing(const std::vector<int64_t>& id_values, bool ids64) {
    std::vector<int32_t> i32(id_values.begin(), id_values.end());
    copy_to_device(ids.data(), ids64 ? static_cast<const void*>(id_values.data()) : i32.data(),
                   id_values.size() * (ids64 ? 8 : 4), s);
    s.synchronize("ids upload");
    MoeRouting r;
    if (ids64) r.experts_i64 = ids.data<int64_t>();
    else r.experts_i32 = ids.data<int32_t>();
    r.weights = w.data<float>();
    r.tokens = 8;
    r.top_k = 6;
    return r;
  }
  void run(const MoeRouting& r, MoeWorkspace& ws) {
    moe_routed_experts(x.data<uint16_t>(), r, layer->table->view(), 5.0f, out.data(), kF32, ws, s.get());
  }
  void expect_finite_output() {
    const auto o = read(out.data<float>(), 8 * 256, s);
    for (float v : o) ASSERT_TRUE(std::isfinite(v));
  }
};

void expect_input_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

TEST(CudaMoeExpertsBadInput, ExpertIdOutOfRangeIsAnInputErrorNotAFault) {
  FP4KIT_REQUIRE_GPU();
  SmallProblem p;
  MoeWorkspace ws(8, 6, 16, 256, 128);
  for (bool ids64 : {false, true}) {
    SCOPED_TRACE(ids64 ? "int64 ids" : "int32 ids");
    std::vector<int64_t> bad = p.host_ids;
    bad[2 * 6 + 3] = 16;
    bad[5 * 6 + 1] = -3;
    expect_input_error([&] { p.run(p.routing(bad, ids64), ws); }, {"token 2 slot 3", "expert 16", "2 such slots"});
    // The device is still healthy and the workspace usable: a good routing runs clean.
    device_synchronize("after a bad routing");
    p.run(p.routing(p.host_ids, ids64), ws);
    p.expect_finite_output();
  }
  // An int64 id beyond int32, and a negative one alone, through the asynchronous call.
  std::vector<int64_t> bad = p.host_ids;
  bad[47] = int64_t{1} << 40;
  expect_input_error([&] { p.run(p.routing(bad, true), ws); }, {"token 7 slot 5", "expert 1099511627776", "1 such slot"});
  bad = p.host_ids;
  bad[0] = -1;
  const MoeRouting r = p.routing(bad, false);
  moe_routed_experts_async(p.x.data<uint16_t>(), r, p.layer->table->view(), 5.0f, p.out.data(), kF32, ws, p.s.get());
  expect_input_error([&] { ws.throw_if_bad_routing(); }, {"token 0 slot 0", "expert -1"});
  device_synchronize("after a bad asynchronous routing");
}

TEST(CudaMoeExpertsBadInput, MoreTokensThanTheWorkspaceIsAnInputError) {
  FP4KIT_REQUIRE_GPU();
  SmallProblem p;
  MoeWorkspace small(7, 6, 16, 256, 128);
  expect_input_error([&] { p.run(p.routing(p.host_ids, false), small); }, {"8 tokens", "at most 7"});
  MoeWorkspace other_k(8, 4, 16, 256, 128);
  expect_input_error([&] { p.run(p.routing(p.host_ids, false), other_k); }, {"k=6", "k=4"});
  MoeWorkspace other_e(8, 6, 32, 256, 128);
  expect_input_error([&] { p.run(p.routing(p.host_ids, false), other_e); }, {"E=32"});
  // None of them left work behind that fails later.
  device_synchronize("after rejected calls");
}

// Validation that happens before any device call (runs without a GPU).
TEST(MoeExpertsValidation, WorkspaceRejectsBadSizes) {
  EXPECT_THROW(MoeWorkspace(8, kMaxMoeTopK + 1, 16, 256, 128), InputError);
  EXPECT_THROW(MoeWorkspace(0, 6, 16, 256, 128), InputError);
  EXPECT_THROW(MoeWorkspace(8, 6, 0, 256, 128), InputError);
  EXPECT_THROW(MoeWorkspace(int64_t{1} << 30, 6, 16, 256, 128), InputError);
}

TEST(MoeExpertsValidation, TableRejectsMixedFormatsShapesMissingDataAndMisalignment) {
  alignas(16) static const uint8_t bytes[32] = {};
  auto w = [](WeightFormat f, int64_t n, int64_t k) {
    GemmWeight g;
    g.format = f;
    g.n = n;
    g.k = k;
    g.data = bytes;
    g.scales = bytes;
    return g;
  };
  const std::vector<GemmWeight> up(2, w(F::Nvfp4, 128, 256)), down(2, w(F::Nvfp4, 256, 128));
  std::vector<GemmWeight> bad = up;
  bad[1].format = F::Mxfp4;
  expect_input_error([&] { MoeExpertTable(up, bad, down); }, {"expert 1 w3", "MXFP4"});
  bad = down;
  bad[1].k = 64;
  expect_input_error([&] { MoeExpertTable(up, up, bad); }, {"expert 1 w2", "[256, 64]", "[256, 128]"});
  bad = up;
  bad[0].scales = nullptr;
  expect_input_error([&] { MoeExpertTable(bad, up, down); }, {"expert 0 w1", "no scales"});
  expect_input_error([&] { MoeExpertTable(up, up, std::vector<GemmWeight>(1, down[0])); }, {"1 w2"});
  // The decode kernels read codes 16 bytes and scales 2 bytes at a time.
  bad = down;
  bad[1].data = bytes + 8;
  expect_input_error([&] { MoeExpertTable(up, up, bad); }, {"expert 1 w2", "16-byte aligned"});
  bad = up;
  bad[0].scales = bytes + 1;
  expect_input_error([&] { MoeExpertTable(up, bad, down); }, {"expert 0 w3", "2-byte aligned"});
}

}  // namespace
}  // namespace fp4kit::cuda
