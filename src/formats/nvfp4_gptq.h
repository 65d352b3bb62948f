#pragma once
// GPTQ over NVFP4 codes (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers"), with the block scales fixed first by any scale method:
// the columns of a weight W [N, K] are rounded one at a time to E2M1 on their block's scale, and
// each column's rounding error is spread over the columns not yet rounded so that the layer output
// X·Wᵀ on the calibration rows changes as little as possible. H = XᵀX (K×K) of the linear's input
// decides how: with U the upper Cholesky factor of (H + λ·mean(diag H)·I)⁻¹, column i's error
// e = (w_i − ŵ_i) / U_ii moves every later column j by −e·U_ij. Columns go in batches of B (lazy
// batch updates: within a batch at once, the later columns once per batch); with static activation
// order they go in the order of decreasing H_ii, each still rounded on its own block's scale.
//
// Rows are independent; each row's arithmetic is in double in a fixed order, so the codes do not
// depend on the thread count. Two implementations give the same bytes: nvfp4_gptq_ref (one row at
// a time) and the fast path (a panel of rows at a time, the batch errors reaching the later columns
// as a product of register tiles, and the blocked Cholesky of base/cholesky.h). The fast path
// keeps the reference's order of operations on every element (a batch's products summed from 0 in
// column order, then subtracted once), so U and the codes are bit-identical, not merely close;
// FP4KIT_ISA=scalar (and a CPU without AVX2) selects the reference. The working values are rounded
// to E2M1 exactly as the scale method's own rounding does (x / divisor in f32, round half to even),
// so a row that receives no update (H a multiple of the identity) gets exactly the codes of plain
// rounding. The GPU path (convert/gptq_gpu.h) takes the same decisions through gptq_prepare and
// gptq_damping_search and computes in F32: its codes are close to these, not identical.
//
// Differences from the paper's reference code: a column no calibration row touched (H_ii = 0)
// keeps its weight (the reference zeroes it) — the block scales were chosen from the weights and
// other inputs may use that channel; the damping that fails to make H numerically positive
// definite is retried ten and a hundred and a thousand times larger, then the weight is left to
// plain rounding (GptqFactor::usable false, counted by the caller).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "formats/float_span.h"
#include "formats/nvfp4.h"

namespace fp4kit {

inline constexpr double kDefaultGptqDamping = 0.01;
inline constexpr size_t kDefaultGptqBlock = 128;

struct GptqOptions {
  double damping = kDefaultGptqDamping;  // λ of λ·mean(diag H)
  size_t block = kDefaultGptqBlock;      // columns per lazy batch, a multiple of 16
  bool act_order = false;                // static activation order: columns by decreasing H_ii
};

// What the compensation of one input (one H) needs.
struct GptqFactor {
  size_t k = 0;
  std::vector<size_t> order;  // column processed at each step
  std::vector<double> u;      // upper Cholesky factor of the damped H⁻¹, in processing order, k×k
  double damping = 0;         // λ that succeeded
  bool usable = false;        // false: plain rounding; `why` says what was wrong with H
  std::string why;
};

// From H (k×k row-major, symmetric). Not usable when H holds NaN or Inf, a negative diagonal value,
// an all-zero diagonal, or stays not positive definite at 1000·λ (λ = 0 retries 0.01, 0.1 and 1).
GptqFactor gptq_factor(const std::vector<double>& h, size_t k, const GptqOptions&, unsigned threads);

// What gptq_factor decides before it factors, and the damping it tries, shared with the GPU's factor
// (cuda/gptq.h) so that both take the same decisions: H checked (not usable, and `why`, as above),
// the processing order (act order: a stable sort by decreasing H_ii) and mean(diag H), in double.
struct GptqPrepared {
  std::vector<size_t> order;
  double diag_mean = 0;
  bool usable = false;
  std::string why;
};
GptqPrepared gptq_prepare(const std::vector<double>& h, size_t k, const GptqOptions&);

// The damping schedule: λ, 10λ, 100λ, 1000λ (λ = 0: 0, 0.01, 0.1, 1), `factor(λ)` called for each
// until one returns true. The λ that succeeded, or a negative value with `why` set to the reason.
template <class FactorFn>
double gptq_damping_search(double lambda, FactorFn&& factor, std::string& why) {
  constexpr int kTries = 4;
  for (int t = 0; t < kTries; ++t, lambda = lambda > 0 ? lambda * 10 : 0.01)
    if (factor(lambda)) return lambda;
  why = "not positive definite with damping up to " + std::to_string(lambda / 10);
  return -1;
}

struct GptqRowStats {
  uint64_t rows = 0;          // rows compensated
  uint64_t skipped_rows = 0;  // rows holding NaN or Inf: plain rounding
};

// Rows per call that let the fast path read each part of U once for that many rows (callers that
// cut the rows into pieces for threads use it as the piece size; any size gives the same bytes).
inline constexpr size_t kGptqRowsPerPiece = 32;

// `src` is rows [first_row, first_row + rows) of a [*, k] weight (rows·k
// values), `scales` their E4M3 block scales (rows·k/16), `scaling` the numerics and global scale
// the codes are rounded with (the scale method's; nvfp4_quant_divisor). Writes rows·k/2 packed
// bytes. A factor that is not usable gives the plain rounding of quantize_with_scales.
GptqRowStats nvfp4_gptq_quantize_rows(FloatSpan src, size_t k, const uint8_t* scales, const Nvfp4Scaling& scaling,
                                      const GptqFactor& factor, size_t block, uint8_t* packed);

namespace nvfp4_gptq_ref {

// The scalar reference of nvfp4_gptq_quantize_rows, same arguments, same bytes.
GptqRowStats quantize_rows(FloatSpan src, size_t k, const uint8_t* scales, const Nvfp4Scaling& scaling,
                           const GptqFactor& factor, size_t block, uint8_t* packed);

// Columns [i1, i2) of one row `w` (k values in processing order, double): each rounded on its
// block's scale, its error spread over the rest of the batch; the errors into err[0, i2 − i1) and
// the codes at their columns. False when a value is not finite. Shared by both paths: the fast
// path changes only how the errors reach the columns after the batch.
bool compensate_batch(double* w, const uint8_t* scales, const Nvfp4Scaling& scaling, const GptqFactor& f, size_t i1,
                      size_t i2, double* err, uint8_t* codes);

}  // namespace nvfp4_gptq_ref

}  // namespace fp4kit
