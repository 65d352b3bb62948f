// The scalar reference of cholesky.h: one column or one element at a time, each element summed in
// the order the fast path keeps.
#include "base/cholesky.h"

#include <cmath>

#include "base/parallel.h"

namespace fp4kit::cholesky_ref {

namespace {

constexpr size_t kRefRowsPerPiece = 16;
// parallel_for starts its threads on each call: a column's trailing update is spread over them
// only when it is large enough to pay for that (about a million multiply-adds).
constexpr size_t kParallelUpdate = size_t{1} << 20;

}  // namespace

bool cholesky_lower(std::vector<double>& a, size_t n, unsigned threads) {
  // Right-looking: column j is finished, then the trailing rows are updated; each element's
  // subtractions run in column order whatever the thread count.
  std::vector<double> col(n);
  for (size_t j = 0; j < n; ++j) {
    double* rj = a.data() + j * n;
    const double pivot = rj[j];
    if (!(pivot > 0.0) || !std::isfinite(pivot)) return false;
    const double d = std::sqrt(pivot);
    rj[j] = d;
    // Column j below the diagonal, contiguous for the update.
    for (size_t i = j + 1; i < n; ++i) col[i] = a[i * n + j] /= d;
    const size_t rest = n - j - 1;
    parallel_for(rest, kRefRowsPerPiece, rest * rest / 2 >= kParallelUpdate ? threads : 1, [&](size_t b, size_t e) {
      for (size_t i = j + 1 + b; i < j + 1 + e; ++i) {
        double* ri = a.data() + i * n;
        const double lij = col[i];
        for (size_t k = j + 1; k <= i; ++k) ri[k] -= lij * col[k];
      }
    });
  }
  for (size_t i = 0; i < n; ++i)
    for (size_t k = i + 1; k < n; ++k) a[i * n + k] = 0.0;
  return true;
}

bool inverse_cholesky_upper(const std::vector<double>& a, size_t n, std::vector<double>& u, unsigned threads) {
  std::vector<double> l = a;
  if (!cholesky_lower(l, n, threads)) return false;
  // M = L⁻¹ (lower), column by column (L·m_c = e_c by forward substitution), stored transposed
  // (mt[c][i] = M[i][c]) so that both loops below read contiguous memory.
  std::vector<double> mt(n * n, 0.0);
  parallel_for(n, kRefRowsPerPiece, threads, [&](size_t b, size_t e) {
    for (size_t c = b; c < e; ++c) {
      double* mc = mt.data() + c * n;
      mc[c] = 1.0 / l[c * n + c];
      for (size_t i = c + 1; i < n; ++i) {
        const double* li = l.data() + i * n;
        double s = 0.0;
        for (size_t k = c; k < i; ++k) s += li[k] * mc[k];
        mc[i] = -s / li[i];
      }
    }
  });
  // a⁻¹ = Mᵀ·M: element (i, j) sums M[k][i]·M[k][j] over k >= max(i, j), where M is non-zero.
  std::vector<double> inv(n * n, 0.0);
  parallel_for(n, kRefRowsPerPiece, threads, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i)
      for (size_t j = i; j < n; ++j) {
        const double *mi = mt.data() + i * n, *mj = mt.data() + j * n;
        double s = 0.0;
        for (size_t k = j; k < n; ++k) s += mi[k] * mj[k];
        inv[i * n + j] = s;
        inv[j * n + i] = s;
      }
  });
  if (!cholesky_lower(inv, n, threads)) return false;
  u.assign(n * n, 0.0);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i; j < n; ++j) u[i * n + j] = inv[j * n + i];
  return true;
}

}  // namespace fp4kit::cholesky_ref
