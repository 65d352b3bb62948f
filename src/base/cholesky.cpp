#include "base/cholesky.h"

#include <algorithm>
#include <cmath>

#include "base/parallel.h"

namespace fp4kit {

namespace {

constexpr size_t kPanel = 64;        // columns factored together before one trailing update
constexpr size_t kChunk = 256;       // columns of a product kept in cache while every row tile passes
constexpr size_t kTile = 4;          // register tile: kTile rows × kTile columns
constexpr size_t kRowsPerPiece = 16; // rows per thread piece (fixed, a multiple of kTile)
// parallel_for starts its threads on each call: only work this large is spread over them.
constexpr size_t kParallelWork = size_t{1} << 20;

unsigned threads_for(size_t work, unsigned threads) { return work >= kParallelWork ? threads : 1; }

// C[i][j] ∓= Σ_t A[i][t]·B[t][j] for rows [i0, i0 + kTile), columns [j0, j0 + kTile), t in
// [t0, t1) ascending, one product at a time: each element gets its terms in t order, as the
// column-at-a-time reference does (the partial sums pass through memory between calls, exactly).
template <bool kSubtract>
inline void tile_update(double* c, size_t ldc, const double* a, size_t lda, const double* b, size_t ldb, size_t i0,
                        size_t j0, size_t t0, size_t t1) {
  double acc[kTile][kTile];
  for (size_t r = 0; r < kTile; ++r)
    for (size_t q = 0; q < kTile; ++q) acc[r][q] = c[(i0 + r) * ldc + j0 + q];
  for (size_t t = t0; t < t1; ++t) {
    const double* bt = b + t * ldb + j0;
    for (size_t r = 0; r < kTile; ++r) {
      const double at = a[(i0 + r) * lda + t];
      for (size_t q = 0; q < kTile; ++q) {
        if constexpr (kSubtract) acc[r][q] -= at * bt[q];
        else acc[r][q] += at * bt[q];
      }
    }
  }
  for (size_t r = 0; r < kTile; ++r)
    for (size_t q = 0; q < kTile; ++q) c[(i0 + r) * ldc + j0 + q] = acc[r][q];
}

// Columns [j0, je) of the lower factor, one at a time, their updates kept to the panel's columns.
bool factor_panel(double* a, size_t n, size_t j0, size_t je, std::vector<double>& col) {
  for (size_t j = j0; j < je; ++j) {
    double* rj = a + j * n;
    const double pivot = rj[j];
    if (!(pivot > 0.0) || !std::isfinite(pivot)) return false;
    const double d = std::sqrt(pivot);
    rj[j] = d;
    for (size_t i = j + 1; i < n; ++i) a[i * n + j] /= d;
    for (size_t kk = j + 1; kk < je; ++kk) col[kk] = a[kk * n + j];
    for (size_t i = j + 1; i < n; ++i) {
      double* ri = a + i * n;
      const double lij = ri[j];
      const size_t end = std::min(i, je - 1);
      for (size_t kk = j + 1; kk <= end; ++kk) ri[kk] -= lij * col[kk];
    }
  }
  return true;
}

}  // namespace

bool cholesky_lower(std::vector<double>& a, size_t n, unsigned threads) {
  // Right-looking by panels: a panel's columns are finished, then the rows below take the panel's
  // products (a[i][k] −= a[i][j]·a[k][j], j ascending) in register tiles. The trailing rows are
  // padded to a multiple of kTile columns in pt; what lands above the diagonal is discarded.
  std::vector<double> col(n), pt;
  for (size_t j0 = 0; j0 < n; j0 += kPanel) {
    const size_t je = std::min(j0 + kPanel, n), nb = je - j0;
    if (!factor_panel(a.data(), n, j0, je, col)) return false;
    if (je == n) break;
    // pt[t][k] = a[k][j0 + t]: the panel transposed, so a tile reads kTile columns at once.
    const size_t ld = n + kTile;
    pt.assign(nb * ld, 0.0);
    for (size_t kk = je; kk < n; ++kk)
      for (size_t t = 0; t < nb; ++t) pt[t * ld + kk] = a[kk * n + j0 + t];
    const size_t rest = n - je;
    parallel_for(rest, kRowsPerPiece, threads_for(rest * rest / 2 * nb, threads), [&](size_t b, size_t e) {
      const size_t tiled = je + b + (e - b) / kTile * kTile;
      for (size_t k0 = je; k0 < tiled; k0 += kChunk)  // a chunk of pt stays in cache for the piece's rows
        for (size_t i = je + b; i < tiled; i += kTile)
          for (size_t k = k0; k < std::min(k0 + kChunk, i + kTile); k += kTile)
            tile_update<true>(a.data(), n, a.data() + j0, n, pt.data(), ld, i, k, 0, nb);
      for (size_t i = tiled; i < je + e; ++i) {  // rows left over at the end: one element at a time, same order
        double* ri = a.data() + i * n;
        for (size_t k = je; k <= i; ++k)
          for (size_t t = 0; t < nb; ++t) ri[k] -= ri[j0 + t] * pt[t * ld + k];
      }
    });
  }
  for (size_t i = 0; i + 1 < n; ++i) std::fill(a.begin() + i * n + i + 1, a.begin() + (i + 1) * n, 0.0);
  return true;
}

bool inverse_cholesky_upper(const std::vector<double>& a, size_t n, std::vector<double>& u, unsigned threads) {
  std::vector<double> l(a);
  if (!cholesky_lower(l, n, threads)) return false;
  // M = L⁻¹ (lower), kTile columns at a time by forward substitution: M[i][c] = −Σ_{k=c}^{i−1}
  // L[i][k]·M[k][c] / L[i][i], the sum from 0 in k order. The columns of a block start at
  // different c; the terms k < c multiply an exact 0 (M is lower triangular) and leave the sum +0,
  // so every element is the reference's. Rows padded to a multiple of kTile columns.
  const size_t np = (n + kTile - 1) / kTile * kTile;
  std::vector<double> m(n * np, 0.0);
  parallel_for(np / kTile, 1, threads_for(n * n * n / 6, threads), [&](size_t b, size_t e) {
    std::vector<double> x(n * kTile);  // the block's columns, contiguous: x[k][q] = M[k][c0 + q]
    for (size_t c0 = b * kTile; c0 < e * kTile; c0 += kTile) {
      std::fill(x.begin(), x.end(), 0.0);
      // kTile rows at a time share the terms k below the first of them (independent sums, so
      // the adds overlap); each row then takes its remaining terms and is finished in order.
      for (size_t i = c0; i < n; i += kTile) {
        const size_t g = std::min(kTile, n - i);
        double s[kTile][kTile] = {};
        for (size_t k = c0; k < i; ++k) {
          const double* xk = x.data() + k * kTile;
          for (size_t r = 0; r < kTile; ++r) {
            const double lik = l[std::min(i + r, n - 1) * n + k];
            for (size_t q = 0; q < kTile; ++q) s[r][q] += lik * xk[q];
          }
        }
        for (size_t r = 0; r < g; ++r) {
          const double* li = l.data() + (i + r) * n;
          for (size_t k = i; k < i + r; ++k)
            for (size_t q = 0; q < kTile; ++q) s[r][q] += li[k] * x[k * kTile + q];
          for (size_t q = 0; q < kTile; ++q) {
            const size_t row = i + r, c = c0 + q;
            x[row * kTile + q] = row < c ? 0.0 : row == c ? 1.0 / li[row] : -s[r][q] / li[row];
          }
        }
      }
      for (size_t k = 0; k < n; ++k)
        for (size_t q = 0; q < kTile && c0 + q < n; ++q) m[k * np + c0 + q] = x[k * kTile + q];
    }
  });
  // a⁻¹ = Mᵀ·M: element (i, j ≥ i) sums M[k][i]·M[k][j] from 0 over k ≥ j in k order. mt = Mᵀ
  // gives the tiles their rows; the terms k < j of a tile's columns are exact zeros and skipped.
  std::vector<double>().swap(l);
  std::vector<double> mt(np * np, 0.0), inv(np * np, 0.0);
  for (size_t k = 0; k < n; ++k)
    for (size_t i = 0; i <= k; ++i) mt[i * np + k] = m[k * np + i];
  for (size_t k0 = 0; k0 < n; k0 += kPanel) {
    const size_t k1 = std::min(k0 + kPanel, n);
    parallel_for(np, kRowsPerPiece, threads_for(np * np / 2 * (k1 - k0), threads), [&](size_t b, size_t e) {
      for (size_t i = b; i < e; i += kTile)
        for (size_t j0 = i; j0 < std::min(np, k1); j0 += kChunk)
          for (size_t j = j0; j < std::min({j0 + kChunk, np, k1}); j += kTile)
            tile_update<false>(inv.data(), np, mt.data(), np, m.data(), np, i, j, std::max(k0, j), k1);
    });
  }
  std::vector<double>().swap(mt);
  std::vector<double>().swap(m);
  std::vector<double> sym(n * n);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i; j < n; ++j) sym[i * n + j] = sym[j * n + i] = inv[i * np + j];
  std::vector<double>().swap(inv);
  if (!cholesky_lower(sym, n, threads)) return false;
  u.assign(n * n, 0.0);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i; j < n; ++j) u[i * n + j] = sym[j * n + i];
  return true;
}

}  // namespace fp4kit
