#pragma once
// Activation-weighted NVFP4 block scales (`--scales hessian`): the same per-block sweep over the 126
// E4M3 candidates as ModelOpt's MSE sweep (formats/nvfp4_mse_sweep.h: same candidates, same scale
// arithmetic, the smaller scale on equal losses, candidate 0 when every loss is NaN), but a
// candidate's loss is eᵀ·H·e, e = w − ŵ over the block's 16 weights and H the 16×16 block of XᵀX of
// the block's input channels, collected by `calibrate --hessian`. A weight error on channels the
// activations hardly use costs little; one on large or correlated channels costs much, which is
// what the layer output ‖X·Wᵀ − X·Ŵᵀ‖² = Σ_rows eᵀ·XᵀX·e measures (per block, cross-block terms
// left out).
//
// H is prepared once per block of channels (HessianBlockWeight): damped by λ·mean(diag) on the
// diagonal, so that channels no row used still count a little, then divided by its largest
// diagonal value, which makes the loss independent of the row count and keeps it in f32 range.
// A block whose H holds NaN or Inf, a negative diagonal value or an all-zero diagonal is not
// usable: that block falls back to the plain squared error (the mse sweep) and is counted.
//
// The loss is the mse sweep's own f32 sum of the diagonal terms h_ii·d_i² (in the kernel's order,
// each square fused into the addition) plus the off-diagonal terms 2·Σ_{i<j} h_ij·e_i·e_j summed in
// F64 (terms with h_ij = 0 are skipped). With H a multiple of the identity every h_ii is exactly 1
// and there is no off-diagonal term, so the choice is the mse sweep's, byte for byte.
//
// The window of the mse sweep rests on a bound for the plain squared error; it does not hold for a
// weighted one, so every block tries all 126 candidates. docs/scale-search.md has the cost.
#include <array>
#include <cstdint>
#include <vector>

#include "formats/float_span.h"
#include "formats/isa.h"
#include "formats/nvfp4_mse_sweep.h"
#include "formats/nvfp4_scale_search.h"

namespace fp4kit {

inline constexpr double kDefaultHessianDamping = 0.01;

struct HessianBlockWeight {
  std::array<float, 256> h{};  // row-major, damped and normalised (largest diagonal value 1)
  bool usable = false;         // false: the block's scale comes from the plain squared error
};

// From one 16×16 block of XᵀX (row-major). `damping` is λ >= 0.
HessianBlockWeight hessian_block_weight(const float* xtx, double damping);

// The two sums of eᵀ·H·e of the block x (16 values) at candidate k: the f32 diagonal sum, the F64
// off-diagonal sum, and whether any off-diagonal term was added (some h_ij != 0).
struct HessianLossTerms {
  float diagonal = 0.0f;
  double cross = 0.0;
  bool any = false;
  float loss() const { return any ? diagonal + static_cast<float>(cross) : diagonal; }
};
HessianLossTerms hessian_block_terms(const float* x, const Nvfp4MseCandidates&, int k, const HessianBlockWeight&, int lanes);

// eᵀ·H·e of the block x (16 values) at candidate k, as described above: hessian_block_terms(...).loss().
float hessian_block_loss(const float* x, const Nvfp4MseCandidates&, int k, const HessianBlockWeight&, int lanes);

// The winning candidate of one block: all 126 tried; an unusable weight gives the mse sweep's winner.
int hessian_sweep(const float* x, const Nvfp4MseCandidates&, const HessianBlockWeight&, int lanes);

struct Nvfp4HessianStats {
  uint64_t blocks = 0;
  uint64_t fallback_blocks = 0;  // blocks whose H was not usable (scale from the plain squared error)
};

// Where each weight block finds its XᵀX block. A plain linear [N, K]: weights has K/16 entries, block
// (r, j) takes entry j. A grouped one (V4's wo_a: row group g multiplies input channels g·K..g·K+K-1
// of a G·K wide input): weights has G·K/16 entries, block (r, j) takes entry (r / rows_per_group)·K/16 + j.
struct HessianLayout {
  size_t blocks_per_row = 0;  // K/16
  size_t rows_per_group = 0;  // N/G (N for a plain linear)
  size_t index(size_t block) const {
    const size_t row = block / blocks_per_row;
    return row / rows_per_group * blocks_per_row + block % blocks_per_row;
  }
};

// The scalar reference for a whole [rows, cols] tensor, row-major, or a run of its blocks: `src`
// holds whole blocks starting at block `first_block` of the tensor, which takes its weight at
// layout.index(first_block + b). `scaling` is an
// Mse or Hessian search scaling (the global amax and weight_scale_2 are the mse sweep's). Writes
// src.size/2 packed bytes and src.size/16 E4M3 scales, exported as ModelOpt exports a static
// quantizer (modelopt_static_block_scale); adds to `stats` when given.
void nvfp4_hessian_quantize_ref(FloatSpan src, size_t first_block, const std::vector<HessianBlockWeight>& weights,
                                const HessianLayout& layout, const Nvfp4SearchScaling& scaling, uint8_t* packed, uint8_t* scales,
                                Nvfp4HessianStats* stats = nullptr);

// Kernel set of one ISA: quantize with nvfp4_hessian_quantize_ref's arguments; block_terms gives
// hessian_block_terms of all 126 candidates of a block of finite values with a usable weight (the
// sums the choice is made from, for tests). Every ISA gives the reference's bits.
struct Nvfp4HessianKernels {
  void (*quantize)(FloatSpan src, size_t first_block, const std::vector<HessianBlockWeight>& weights,
                   const HessianLayout& layout, const Nvfp4SearchScaling& scaling, uint8_t* packed, uint8_t* scales,
                   Nvfp4HessianStats* stats);
  void (*block_terms)(const float* x, const Nvfp4MseCandidates& candidates, const HessianBlockWeight& weight, int lanes,
                      HessianLossTerms* terms);
};

const Nvfp4HessianKernels& nvfp4_hessian_kernels(Isa isa = preferred_isa());

namespace nvfp4_hessian_simd {
// The vector kernels for `isa` (nvfp4_hessian_sweep_simd.cpp), nullptr where none were compiled.
const Nvfp4HessianKernels* kernels(Isa isa);
}  // namespace nvfp4_hessian_simd

}  // namespace fp4kit
