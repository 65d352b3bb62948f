#include "formats/nvfp4_gptq.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "base/cholesky.h"
#include "formats/e2m1.h"
#include "formats/isa.h"

namespace fp4kit {

namespace {

constexpr size_t kTile = 4;         // register tile of the batch-error product: rows × columns
constexpr size_t kPanelRows = kGptqRowsPerPiece;  // rows that share each pass over U
using Lanes = double __attribute__((vector_size(16)));
constexpr size_t kColumnChunk = 256; // columns of U kept in cache while the panel's row tiles pass

// W[:, i2:] −= Err · U[i1:i2, i2:] for a panel of rows (rows a multiple of kTile): each element's
// products summed from 0 in batch order, then subtracted once — the reference's order, so the same
// bits; kTile × kTile register tiles, U read once per panel instead of once per row.
void spread_batch_errors(double* w, size_t rows, size_t k, const double* err, size_t ld_err, const double* u, size_t i1,
                         size_t i2) {
  const size_t b = i2 - i1;
  for (size_t j0 = i2; j0 < k; j0 += kColumnChunk)
    for (size_t r0 = 0; r0 < rows; r0 += kTile)
      for (size_t j = j0; j < std::min(j0 + kColumnChunk, k); j += kTile) {
        // Two-lane vectors (the baseline ISA's width), element-wise: each lane is one element's sum.
        Lanes acc[kTile][kTile / 2] = {};
        for (size_t t = 0; t < b; ++t) {
          const double* ut = u + (i1 + t) * k + j;
          Lanes ul[kTile / 2];
          std::memcpy(ul, ut, sizeof ul);
          for (size_t r = 0; r < kTile; ++r) {
            const double e = err[(r0 + r) * ld_err + t];
            for (size_t q = 0; q < kTile / 2; ++q) acc[r][q] += e * ul[q];
          }
        }
        for (size_t r = 0; r < kTile; ++r)
          for (size_t q = 0; q < kTile; ++q) w[(r0 + r) * k + j + q] -= acc[r][q / 2][q % 2];
      }
}


}  // namespace

GptqPrepared gptq_prepare(const std::vector<double>& h, size_t k, const GptqOptions& options) {
  GptqPrepared p;
  p.order.resize(k);
  std::iota(p.order.begin(), p.order.end(), size_t{0});
  double trace = 0;
  for (size_t i = 0; i < k; ++i) {
    const double d = h[i * k + i];
    if (!std::isfinite(d) || d < 0) {
      p.why = std::isfinite(d) ? "a negative diagonal value" : "NaN or Inf";
      return p;
    }
    trace += d;
  }
  for (double v : h)
    if (!std::isfinite(v)) {
      p.why = "NaN or Inf";
      return p;
    }
  if (!(trace > 0)) {
    p.why = "an all-zero diagonal (no calibration row)";
    return p;
  }
  if (options.act_order)
    std::stable_sort(p.order.begin(), p.order.end(), [&](size_t a, size_t b) { return h[a * k + a] > h[b * k + b]; });
  p.diag_mean = trace / static_cast<double>(k);
  p.usable = true;
  return p;
}

GptqFactor gptq_factor(const std::vector<double>& h, size_t k, const GptqOptions& options, unsigned threads) {
  GptqPrepared p = gptq_prepare(h, k, options);
  GptqFactor f;
  f.k = k;
  f.order = std::move(p.order);
  if (!p.usable) {
    f.why = std::move(p.why);
    return f;
  }
  std::vector<double> damped(k * k);
  for (size_t i = 0; i < k; ++i)
    for (size_t j = 0; j < k; ++j) damped[i * k + j] = h[f.order[i] * k + f.order[j]];
  const bool scalar = preferred_isa() == Isa::Scalar;  // FP4KIT_ISA=scalar: the reference factor
  const double lambda = gptq_damping_search(
      options.damping,
      [&](double l) {
        std::vector<double> a = damped;
        for (size_t i = 0; i < k; ++i) a[i * k + i] += l * p.diag_mean;
        return scalar ? cholesky_ref::inverse_cholesky_upper(a, k, f.u, threads)
                      : inverse_cholesky_upper(a, k, f.u, threads);
      },
      f.why);
  if (lambda < 0) {
    f.u.clear();
    return f;
  }
  f.damping = lambda;
  f.usable = true;
  return f;
}

GptqRowStats nvfp4_gptq_quantize_rows(FloatSpan src, size_t k, const uint8_t* scales, const Nvfp4Scaling& scaling,
                                      const GptqFactor& factor, size_t block, uint8_t* packed) {
  if (!factor.usable || preferred_isa() == Isa::Scalar)
    return nvfp4_gptq_ref::quantize_rows(src, k, scales, scaling, factor, block, packed);
  GptqRowStats stats;
  const size_t rows = src.size / k;
  std::vector<double> w, err;
  std::vector<uint8_t> codes(kPanelRows * k);
  std::vector<char> ok(kPanelRows);
  for (size_t p0 = 0; p0 < rows; p0 += kPanelRows) {
    const size_t pr = std::min(kPanelRows, rows - p0);
    const size_t pp = (pr + kTile - 1) / kTile * kTile;  // padding rows: weights and errors 0
    w.assign(pp * k, 0.0);
    err.assign(pp * block, 0.0);
    for (size_t r = 0; r < pr; ++r) {
      const FloatSpan row = src.subspan((p0 + r) * k, k);
      ok[r] = 1;
      for (size_t i = 0; i < k && ok[r]; ++i) {
        w[r * k + i] = row.at(factor.order[i]);
        ok[r] = std::isfinite(w[r * k + i]);
      }
    }
    for (size_t i1 = 0; i1 < k; i1 += block) {
      const size_t i2 = std::min(i1 + block, k);
      for (size_t r = 0; r < pr; ++r)
        if (ok[r])
          ok[r] = nvfp4_gptq_ref::compensate_batch(w.data() + r * k, scales + (p0 + r) * k / kNvfp4BlockSize, scaling, factor, i1, i2,
                                   err.data() + r * block, codes.data() + r * k);
      for (size_t r = 0; r < pr; ++r)
        if (!ok[r]) std::fill_n(err.data() + r * block, block, 0.0);  // its row is redone by the reference
      if (i2 < k) spread_batch_errors(w.data(), pp, k, err.data(), block, factor.u.data(), i1, i2);
    }
    for (size_t r = 0; r < pr; ++r) {
      const size_t row = p0 + r;
      if (!ok[r]) {  // NaN or Inf met: the reference's plain rounding, row by row
        const GptqRowStats s = nvfp4_gptq_ref::quantize_rows(src.subspan(row * k, k), k, scales + row * k / kNvfp4BlockSize,
                                                             scaling, factor, block, packed + row * k / 2);
        stats.rows += s.rows;
        stats.skipped_rows += s.skipped_rows;
        continue;
      }
      ++stats.rows;
      const uint8_t* c = codes.data() + r * k;
      for (size_t j = 0; j < k; j += 2) packed[(row * k + j) / 2] = pack_e2m1(E2M1{c[j]}, E2M1{c[j + 1]});
    }
  }
  return stats;
}
}  // namespace fp4kit
