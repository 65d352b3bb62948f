#pragma once
// GPTQ's arithmetic on the GPU, in F32. formats/nvfp4_gptq.h is the specification and the CPU
// reference; convert/gptq_gpu.h takes the CPU path's decisions (checks of H, processing order,
// damping schedule, scale tables) and hands this class only the device work:
// - the factor: U, the upper Cholesky factor of the damped H⁻¹ in processing order, without forming
//   H⁻¹. With J the reversal of the k indices, cuSOLVER's potrf gives L with J·A·J = L·Lᵀ (A the
//   damped H), so A = R·Rᵀ with R = J·L·J upper, A⁻¹ = R⁻ᵀ·R⁻¹ and U = R⁻¹ = J·L⁻¹·J (L⁻¹ by a
//   cuBLAS triangular solve against the identity; U is unique, so it is the CPU's U up to rounding);
// - the rows: per batch of at most kGptqDeviceMaxBatch columns, a kernel (one warp per row, the
//   batch's block of U in shared memory) rounds each column on its block's scale and moves the rest
//   of the batch by its error; then one cuBLAS SGEMM moves the columns after the batch,
//   W[:, i2:] −= E·U[i1:i2, i2:] (the lazy batch update).
// Plain C++ header (no CUDA types); the CPU-only build links a stand-in whose constructor throws
// InputError. Errors of CUDA, cuBLAS and cuSOLVER are DeviceError naming the call or kernel and
// the shape.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "formats/float_span.h"
#include "formats/nvfp4_gptq.h"  // GptqRowStats

namespace fp4kit::cuda {

// The most columns the column kernel takes at once (its block of U fills 66 KB of shared memory);
// a --gptq-block above it is processed in batches of this size (the same sums in exact arithmetic,
// grouped differently: only the rounding changes).
inline constexpr size_t kGptqDeviceMaxBatch = 128;

// Per E4M3 scale byte: what a block's values are divided by before the E2M1 cast, and what decoded
// codes are multiplied by (nvfp4_quant_divisor and nvfp4_dequant_multiplier of the scaling, which
// the caller computes on the CPU so that the GPU rounds with the CPU's very numbers).
struct GptqScaleTables {
  float divisor[256];
  float multiplier[256];
};

// A GPU session for GPTQ on the current device: a stream, cuBLAS and cuSOLVER handles, and buffers
// kept across matrices of the same size. One thread at a time.
class GptqDevice {
 public:
  GptqDevice();
  ~GptqDevice();
  GptqDevice(const GptqDevice&) = delete;
  GptqDevice& operator=(const GptqDevice&) = delete;

  // H (k×k, row-major, symmetric; finite: the caller checked it) and the processing order (k column
  // indices) to the device. Forgets the last factor.
  void set_matrix(const double* h, size_t k, const size_t* order);

  // Factors A = H[order][order] + diag_add·I (diag_add = λ·mean(diag H): the diagonal is summed in
  // F64, then every value rounded to F32) as above. True when potrf finds A positive definite and U
  // is finite; U then stays on the device for quantize_rows. False otherwise (the next λ's turn).
  bool factor(double diag_add);

  // U of the last successful factor(), k×k row-major in processing order (zeros below the diagonal).
  std::vector<float> u() const;

  // GPTQ's codes for `src` (rows [*, k] in host memory, BF16/F16/F32, k a multiple of 16) with U of
  // the last successful factor(), their E4M3 block scales `scales` (rows·k/16 bytes, host) kept, in
  // batches of min(block, kGptqDeviceMaxBatch) columns (block a positive multiple of 16); rows·k/2
  // packed bytes into `packed` (host). A row holding NaN or Inf, or whose error turns non-finite,
  // gets the plain rounding of its values (x / divisor in F32, round half to even), as on the CPU.
  GptqRowStats quantize_rows(FloatSpan src, size_t k, const uint8_t* scales, const GptqScaleTables& tables,
                             size_t block, uint8_t* packed);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fp4kit::cuda
