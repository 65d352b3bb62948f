#pragma once
// The whole XᵀX on the device (`calibrate --hessian-mode full` with `--device cuda`; the CPU's is
// calib/xtx_full_observer.h), in F64: the rows are widened to F64 (times their weight, as on the
// CPU) a bounded number at a time and each piece's Gram matrix is added by cuBLAS DSYRK. The
// products are the CPU's (exact without weights), only the order of the F64 sums differs (cuBLAS
// picks it; it is the same from run to run on one GPU model and toolkit). NaN and Inf propagate
// through the products and sums as on the CPU. Plain C++ header; the CPU-only build links a
// stand-in whose constructor throws InputError.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "cuda/runtime.h"
#include "cuda/xtx_rows.h"

namespace fp4kit::cuda {

// The rows per DSYRK product: as many as fill 256 MiB of F64 rows.
inline constexpr size_t kXtxFullScratchBytes = size_t{256} << 20;

// A cuBLAS handle and the F64 copy of the rows being multiplied, kept across modules. One thread
// at a time.
class XtxFullWorkspace {
 public:
  // max_rows: at most this many rows per product (0: as many as kXtxFullScratchBytes holds).
  explicit XtxFullWorkspace(int64_t max_rows = 0);
  ~XtxFullWorkspace();
  XtxFullWorkspace(const XtxFullWorkspace&) = delete;
  XtxFullWorkspace& operator=(const XtxFullWorkspace&) = delete;

  // For g < groups: sums[g] += Σ_r d_r·d_rᵀ over columns [g·k, (g+1)·k) of the rows (x.cols =
  // groups·k). sums: device F64 [groups][k][k], of which each matrix keeps its upper triangle in
  // column-major order — entry (i, j), i <= j, at sums[g·k² + i + j·k] (read it with
  // xtx_full_symmetric_f32); the rest is not touched. Asynchronous on `stream`. Error naming the
  // call and the shape for malformed rows; DeviceError for cuBLAS failures.
  void accumulate(const XtxRows& x, int64_t groups, int64_t k, double* sums, StreamHandle stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// out [groups][k][k] (device F32, row-major, symmetric) = the sums above, each rounded once to F32.
// Asynchronous on `stream`.
void xtx_full_symmetric_f32(const double* sums, int64_t groups, int64_t k, float* out, StreamHandle stream);

}  // namespace fp4kit::cuda
