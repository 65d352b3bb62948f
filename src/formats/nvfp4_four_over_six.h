#pragma once
// ModelOpt's "four over six" NVFP4 weights (NVFP4_FOUR_OVER_SIX_CFG, after arXiv 2512.02010): each
// 16-element block keeps its max-scaled amax (the largest element maps to E2M1 6) or 1.5 times it
// (the largest element maps to 4), whichever has the smaller squared error; equal errors keep 1.0.
// Block scales are normalised to E4M3 256 instead of 448, so that 1.5 times the largest block
// (384) still fits, and the global scale is amax/(6*256). The comparison runs on the GPU in
// ModelOpt's fake-quant kernel, whose arithmetic is reproduced here (docs/scale-search.md).
namespace fp4kit {

// The block scale ModelOpt's static fake quant divides by for a candidate block amax: amax/6
// rounded to E4M3 relative to global_amax*(448/256)/6, as its FP8 extension computes it.
float four_over_six_fake_scale(float candidate_amax, float global_amax);

// The same for many blocks of one tensor: the factors that depend only on the global amax are
// computed once.
class FourOverSixFakeScale {
 public:
  explicit FourOverSixFakeScale(float global_amax);
  float operator()(float candidate_amax) const;

 private:
  float factor_ = 1.0f, inverse_ = 1.0f;
};

// What nvfp4_scalar_quant divides by for a block scale: NaN, infinite and zero scales count as 1
// (a zero scale also makes every element 0).
float four_over_six_safe_scale(float scale);

// Squared error of a block of 16 values fake-quantized with block scale `scale`, summed as torch sums.
float four_over_six_block_loss(const float* x, float scale);

// The choice between the two losses: torch.argmin over {loss at 1.0, loss at 1.5}.
bool four_over_six_prefers_four(float loss6, float loss4);

// Whether a block of 16 values with amax `block_amax` gets 1.5 * block_amax (E2M1 4 for its largest
// element) rather than block_amax.
bool four_over_six_picks_four(const float* x, float block_amax, float global_amax);

}  // namespace fp4kit
