#pragma once
// Linear layers on the GPU with the weight decoded on the fly: y = x·Wᵀ for a weight stored as the
// checkpoint stores it (NVFP4, MXFP4, FP8 with 128x128 block scales, BF16). Every decoded weight
// value is exact in BF16, so the tensor cores take BF16 operands and accumulate in F32; the NVFP4
// global scale and F32 FP8 block scales are applied in F32. Plain C++ header: no CUDA headers.
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/runtime.h"

namespace fp4kit::cuda {

enum class WeightFormat : uint8_t { Nvfp4, Mxfp4, Fp8Block, Bf16 };

// One [N, K] linear weight (y = x·Wᵀ) in device memory, stored as the checkpoint stores it.
struct GemmWeight {
  WeightFormat format = WeightFormat::Bf16;
  int64_t n = 0, k = 0;
  const void* data = nullptr;    // Nvfp4/Mxfp4: U8 [N, K/2], even k in the low nibble; Fp8Block: E4M3 [N, K]; Bf16: [N, K]
  const void* scales = nullptr;  // Nvfp4: E4M3 [N, K/16]; Mxfp4: E8M0 [N, K/32];
                                 // Fp8Block: [ceil(N/128), ceil(K/128)], E8M0 bytes or F32 (fp8_scales_f32); Bf16: null
  bool fp8_scales_f32 = false;
  float global_scale = 1.0f;     // Nvfp4: weight_scale_2 (value = e2m1 * e4m3 * global_scale); 1 otherwise
  // The weight is not written by the work just before the product on its stream (resident weights):
  // a dense FP4 decode product may then start reading it while that work finishes (programmatic
  // dependent launch); x is read only once that work is complete.
  bool read_early = false;
};

enum class GemmOutput : uint8_t { F32, Bf16 };

// y[M, N] = x[M, K] · Wᵀ: x BF16 row-major [M, K], y row-major [M, N], F32 accumulation.
// M may be anything >= 0 (0: nothing to do); K must be a multiple of 16 (Nvfp4) / 32 (Mxfp4).
void weight_gemm(const uint16_t* x, int64_t m, const GemmWeight& w, void* y, GemmOutput out, StreamHandle stream);

// `batch` products of a few rows in one launch, where product b's weight is rows [b·n, (b+1)·n) of
// one [batch·n, k] weight (DeepSeek V4's grouped output projection wo_a) and its rows of x and y lie
// at fixed strides (elements):
//   y[b·y_batch_stride + r·ldy + c] = Σ_j x[b·x_batch_stride + r·ldx + j] · W[b·n + c, j]
// for r < m, c < n. Only what the register-streaming decode kernel takes (batched_weight_gemm_takes):
// NVFP4, MXFP4 or FP8-block weights, 1 <= m <= 16, k a multiple of 128, n a multiple of 128 for FP8
// blocks (each product's rows start a scale block), x rows and strides 16-byte aligned.
struct BatchedGemm {
  const uint16_t* x = nullptr;  // BF16
  int64_t m = 0, ldx = 0, x_batch_stride = 0;
  GemmWeight w;                 // [batch * n, k]
  int64_t batch = 1, n = 0;
  void* y = nullptr;
  int64_t ldy = 0, y_batch_stride = 0;
  GemmOutput out = GemmOutput::F32;
};
bool batched_weight_gemm_takes(WeightFormat format, int64_t m, int64_t n, int64_t k);
void batched_weight_gemm(const BatchedGemm& b, StreamHandle stream);

// Weight descriptors copied to the device (for kernels that take an array of weights), ordered with
// the stream whose allocations the buffer follows, if any.
DeviceBuffer upload_weight_descriptors(const std::vector<GemmWeight>& w, const std::string& what);

// Several products of one x in one launch (a decode step's projections of one input: V4's wq_a and
// wkv, and the compressors' and the indexer's): y_p [m, n_p] = x [m, k] · W_pᵀ for each weight W_p of
// a WeightSet, y_p dense where y[p] points. Only what weight_set_gemm_takes() accepts: 2 to
// kMaxWeightSet weights of one format (NVFP4, MXFP4 or FP8 blocks) and one k (a multiple of 128),
// 1 <= m <= kMaxWeightSetRows, the codes 16-byte aligned and the scales 2-byte aligned (FP8's F32
// scales 4-byte).
// Each product is computed as the register-streaming kernel computes a dense one (its K split may
// differ: the sums agree to the order of F32 additions).
inline constexpr int kMaxWeightSet = 8;
inline constexpr int64_t kMaxWeightSetRows = 8;
bool weight_set_gemm_takes(const std::vector<GemmWeight>& weights, int64_t m);
// The weights' descriptors on the device, made once for many calls (InputError unless
// weight_set_gemm_takes(weights, 1)).
class WeightSet {
 public:
  explicit WeightSet(const std::vector<GemmWeight>& weights);
  size_t size() const { return host_.size(); }
  const GemmWeight& weight(size_t p) const { return host_[p]; }
  const GemmWeight* device() const { return device_.data<GemmWeight>(); }

 private:
  std::vector<GemmWeight> host_;
  DeviceBuffer device_;
};
void weight_set_gemm(const uint16_t* x, int64_t m, const WeightSet& set, void* const* y, GemmOutput out,
                     StreamHandle stream);

// y = silu(min(x·gateᵀ, limit)) * clamp(x·upᵀ, -limit, limit) (DeepSeek V4's clamped SwiGLU; no clamp
// when limit <= 0) for a few rows, both products in one launch that reads each weight once: a decode
// step's shared expert. Only what weight_gemm_swiglu_takes() accepts: gate and up of one format
// (NVFP4, MXFP4 or FP8 blocks) and shape, 1 <= m <= 8, K a multiple of 128, x and the weight codes
// 16-byte aligned, the scales 2-byte aligned (FP8's F32 scales 4-byte).
bool weight_gemm_swiglu_takes(const GemmWeight& gate, const GemmWeight& up, int64_t m);
void weight_gemm_swiglu(const uint16_t* x, int64_t m, const GemmWeight& gate, const GemmWeight& up, float limit, void* y,
                        GemmOutput out, StreamHandle stream);

// All experts of a layer in one launch. Rows of x are sorted by group: group g owns rows
// [offsets[g], offsets[g+1]) (offsets on the device, G+1 entries, offsets[0] = 0, offsets[G] = rows).
struct GroupedGemm {
  const uint16_t* x = nullptr;        // [rows, k] BF16
  int64_t rows = 0;                   // total rows (known on the host)
  const int32_t* offsets = nullptr;   // device [groups + 1]
  int32_t groups = 0;
  int64_t n = 0, k = 0;               // every group's weight is [n, k] ...
  WeightFormat format = WeightFormat::Nvfp4;  // ... in this format
  const GemmWeight* weights = nullptr;  // device array [groups]
  // With `up` (device array [groups]): y = silu(min(x·gateᵀ, limit)) * clamp(x·upᵀ, -limit, limit)
  // (DeepSeek V4's clamped SwiGLU; no clamp when swiglu_limit <= 0), `weights` being the gate (w1).
  const GemmWeight* up = nullptr;
  float swiglu_limit = 0.0f;
  void* y = nullptr;                  // [rows, n]
  GemmOutput out = GemmOutput::Bf16;
};
void grouped_weight_gemm(const GroupedGemm& g, StreamHandle stream);

}  // namespace fp4kit::cuda
