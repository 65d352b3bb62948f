#pragma once
// Dense symmetric positive definite matrices in double precision, row-major n×n: the Cholesky
// factor and what GPTQ needs from it (the upper Cholesky factor of the inverse). Written here
// because the build has no linear algebra library.
//
// Two implementations with bit-identical results: cholesky_ref (one column or one element at a
// time) and the blocked one below (panels and register tiles, the work of n³ order as products of
// small tiles). Both sum every output element in the same order — a Cholesky element subtracts its
// products in column order, a solve or product element adds them in index order starting from 0 —
// so they agree bit for bit, and neither depends on the thread count (rows or columns are spread
// over the threads in fixed pieces).
#include <cstddef>
#include <vector>

namespace fp4kit {

// In place: a becomes L (lower triangle, the upper set to 0) with L·Lᵀ = a. False when a pivot is
// not positive and finite (a not positive definite, or holding NaN/Inf); a is then unspecified.
bool cholesky_lower(std::vector<double>& a, size_t n, unsigned threads);

// The upper triangular U with Uᵀ·U = a⁻¹, for a symmetric positive definite a (GPTQ's "Cholesky of
// the inverse Hessian"): L = chol(a), a⁻¹ = L⁻ᵀ·L⁻¹, U = chol(a⁻¹)ᵀ. False when a or a⁻¹ is not
// numerically positive definite.
bool inverse_cholesky_upper(const std::vector<double>& a, size_t n, std::vector<double>& u, unsigned threads);

namespace cholesky_ref {

bool cholesky_lower(std::vector<double>& a, size_t n, unsigned threads);
bool inverse_cholesky_upper(const std::vector<double>& a, size_t n, std::vector<double>& u, unsigned threads);

}  // namespace cholesky_ref

}  // namespace fp4kit
