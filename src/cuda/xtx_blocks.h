#pragma once
// The 16×16 diagonal blocks of XᵀX on the device (`calibrate --hessian` with `--device cuda`; the
// CPU's is calib/xtx_table.h): sums[j][a][b] += Σ_r d_r[16j+a]·d_r[16j+b] with d_r = w_r·x_r (or
// x_r), every value widened to F64 first, so the products are the CPU's (exact without weights:
// two F32 significands fit in F64's) and only the order of the F64 sums differs. Deterministic:
// each entry sums its rows in a fixed order, and entry (a, b) sums the same products as (b, a) in
// the same order, so every block is exactly symmetric. NaN and Inf propagate as on the CPU (a NaN
// in x[r][c] makes row and column c of its block NaN; a zero weight times NaN or Inf is NaN).
// Plain C++ header.
#include "cuda/runtime.h"
#include "cuda/xtx_rows.h"

namespace fp4kit::cuda {

// sums: device F64 [x.cols/16][16][16], added to. Error naming the kernel and the shape when
// x.cols is not a multiple of 16 or the rows are malformed. Asynchronous on `stream`.
void xtx_blocks_accumulate(const XtxRows& x, double* sums, StreamHandle stream);

}  // namespace fp4kit::cuda
