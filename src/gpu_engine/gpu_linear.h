#pragma once
// The forward pass's linear products y = x·Wᵀ on the device, in one of two precisions:
//  - F32 (the check mode): the weight decoded to F32, a full-F32 cuBLASLt product; the tests hold
//    its logits to the CPU engine's.
//  - BF16 (the default): x rounded to BF16, the weight read as the checkpoint stores it by the weight
//    GEMMs (cuda/weight_gemm.h: NVFP4, MXFP4 and FP8 blocks decoded in registers, BF16 tensor cores,
//    F32 accumulation), which is what the serving engines compute. Plain F32/F16 weights are rounded
//    to BF16 once, as a BF16 model holds them. Outputs stay F32, and so does everything between the
//    products (norms, attention, hyper-connections, the residual streams).
#include <cstdint>
#include <string>
#include <unordered_map>

#include "cuda/cublas_gemm.h"
#include "cuda/runtime.h"
#include "cuda/weight_gemm.h"
#include "gpu_engine/device_group.h"
#include "gpu_engine/precision.h"
#include "models/stored_weight.h"

namespace fp4kit::gpu_engine {

// One linear weight [n, k] of the current group, ready for products.
struct LinearWeight {
  std::string name;
  int64_t n = 0, k = 0;
  bool f32 = false;           // `owned` is the F32 weight and the product is full F32
  cuda::DeviceBuffer owned;   // F32: the decoded weight; BF16: a BF16 copy where the stored form cannot be read
  cuda::GemmWeight stored;    // BF16: what the weight GEMM reads (the group's bytes, or `owned`)
  bool dense = false;         // BF16: `owned` is read by cuBLASLt (K not a multiple the weight GEMM takes)
};

class GpuLinear {
 public:
  // `group`, `stored` and `stream` must outlive this object.
  GpuLinear(Precision precision, const DeviceGroup& group, const StoredWeights& stored, std::string dir,
            const cuda::Stream& stream, int64_t decode_once_rows = kDecodeOnceRows);
  Precision precision() const { return precision_; }
  // The cuBLASLt handle of the products (ordered on this object's stream).
  cuda::CublasGemm& cublas() { return gemm_; }

  // The weight `name` of the current group, checked against [n, k] (InputError naming it). Callers that
  // take its rows in blocks (`row_block` > 0) get a form whose row blocks can be read on their own.
  LinearWeight weight(const std::string& name, int64_t n, int64_t k, int64_t row_block = 0);
  // The same with a full-F32 product in either precision (the router's scores, as DeepSeek's and
  // transformers' routers compute them in F32).
  LinearWeight weight_f32(const std::string& name, int64_t n, int64_t k);

  // y [m, rows] (row stride ldy) = x [m, k] (row stride ldx) · W[row0 : row0 + rows]ᵀ; rows < 0: all.
  // x_bf16: x already rounded to BF16 ([m, k] dense, round to nearest even) where several products
  // read the same x or the kernel that made x rounded it too, or null. Asynchronous on the stream.
  void apply(const float* x, int64_t ldx, const LinearWeight& w, float* y, int64_t ldy, int64_t m, int64_t row0 = 0,
             int64_t rows = -1, const uint16_t* x_bf16 = nullptr);

  // Grouped rows: y[:, g·R : (g+1)·R] = x[:, g·k : (g+1)·k] · W[g·R : (g+1)·R]ᵀ for g < groups, with
  // W [groups·R, k] (taken with row_block R), x [m, groups·k] and y [m, groups·R] dense. The same
  // products as `groups` calls of apply(); one BF16 rounding of x, and for a few rows of a stored
  // FP4/FP8 weight one launch (cuda::batched_weight_gemm). x_bf16: x already rounded to BF16 ([m,
  // groups·k] dense), or null.
  void apply_groups(const float* x, const LinearWeight& w, float* y, int64_t m, int64_t groups, int64_t R,
                    const uint16_t* x_bf16 = nullptr);
  // The same products written as BF16 (y16 [m, groups·R]: each F32 sum rounded to nearest even) for a
  // next product that reads them as its x_bf16, where they go as one launch (a few rows of a stored
  // FP4/FP8 weight). False, with nothing queued, otherwise.
  bool apply_groups_bf16(const float* x, const LinearWeight& w, uint16_t* y16, int64_t m, int64_t groups, int64_t R,
                         const uint16_t* x_bf16 = nullptr);

  // y16 [m, n] = silu(min(x·W1ᵀ, limit)) * clamp(x·W3ᵀ, -limit, limit) rounded to BF16, both products
  // in one launch, from x16 [m, k] (BF16, dense): where the fused decode kernel takes the two
  // weights at this m (stored FP4/FP8-block weights of one format, a few rows). False, with nothing
  // queued, otherwise: the caller then runs the two products and the SwiGLU itself.
  bool apply_swiglu(const uint16_t* x16, const LinearWeight& w1, const LinearWeight& w3, int64_t m, float limit,
                    uint16_t* y16);

  // x [m, k] (row stride ldx) rounded to BF16, dense, in this object's scratch: valid until the next call.
  const uint16_t* to_bf16(const float* x, int64_t ldx, int64_t m, int64_t k);

 private:
  float* scratch_f32(cuda::DeviceBuffer& b, int64_t n, const char* what);
  // apply_groups as one batched launch into y (F32 or BF16); false where that path does not apply.
  bool apply_groups_batched(const float* x, const LinearWeight& w, void* y, cuda::GemmOutput out, int64_t m, int64_t groups,
                            int64_t R, const uint16_t* x_bf16);
  // w as dense BF16 [n, k] (its bytes, or decoded into a scratch kept while the same weight of the
  // same group is asked again); nullptr where that is not exact.
  const uint16_t* bf16_values(const LinearWeight& w);

  Precision precision_;
  const DeviceGroup& group_;
  const StoredWeights& stored_;
  std::string dir_;
  const cuda::Stream& stream_;
  int64_t decode_once_rows_;
  cuda::CublasGemm gemm_;
  cuda::DeviceBuffer x_dense_, x_bf16_, y_dense_;
  cuda::DeviceBuffer w_bf16_;
  // weight()'s answers for weights the kernels read as stored, while the group upload they point into
  // lasts (a decode step asks for the same weights every step; naming and checking one anew costs
  // host time of the order of a launch).
  struct Known {
    uint64_t generation = 0;
    int64_t n = 0, k = 0, row_block = 0;
    cuda::GemmWeight stored;
  };
  std::unordered_map<std::string, Known> known_;
  const void* w_bf16_of_ = nullptr;  // the stored bytes w_bf16_ holds decoded, from group load w_bf16_generation_
  uint64_t w_bf16_generation_ = 0;
};

}  // namespace fp4kit::gpu_engine
