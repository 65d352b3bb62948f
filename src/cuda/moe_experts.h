#pragma once
// The routed experts of one DeepSeek V4 mixture-of-experts layer on the GPU, every active expert in
// one launch per stage (the router and the shared expert are not part of it):
//   1. route:   the T·k (token, slot) pairs are sorted by expert id (CUB radix sort, stable, so the
//               rows of an expert are in token order), the rows of x are gathered into that order and
//               the group offsets of each expert are found;
//   2. w1/w3:   grouped_weight_gemm with the fused clamped SwiGLU,
//               h = silu(min(x·w1ᵀ, limit)) * clamp(x·w3ᵀ, -limit, limit), written as BF16 [T·k, I];
//   3. w2:      grouped_weight_gemm, y = h·w2ᵀ in F32 [T·k, H];
//   4. combine: out[t] = Σ_j weight[t, j] · y[row of (t, j)], the k terms added in increasing expert id
//               (ties: slot order) as the CPU engine adds them: acc = +0, then acc = acc + (y·w), every
//               product and sum rounded to F32 (no fused multiply-add), one thread per output element.
//               Deterministic: no atomics, each token reads its k rows through the inverse permutation.
//
// Precision (what the serving engines do, and what the tests bound):
//  - x is BF16; the products accumulate in F32 on BF16 tensor cores (every decoded weight is exact
//    in BF16).
//  - h is rounded to BF16 between the two products (the CPU engine keeps it in F32; the tests
//    round it where the GPU does).
//  - The routing weight multiplies the expert's F32 output after w2, as transformers does
//    (DeepseekV4 eager loop) and as the CPU engine does. DeepSeek's official inference code
//    multiplies it into h before w2 instead, w2(w·h): mathematically the same, but there the BF16
//    rounding of h includes the weight, so the two differ by about one BF16 rounding of h.
//
// No allocation happens per call: a MoeWorkspace is sized once for a largest token count. An expert
// id outside [0, experts) never causes an out-of-bounds access: its rows are computed with the last
// expert, a record of the first bad id is kept on the device (nothing is copied back during a call),
// and moe_routed_experts (or MoeWorkspace::throw_if_bad_routing after the asynchronous variant)
// reads it and raises it as InputError.
//
// Plain C++ header: no CUDA headers.
#include <cstdint>
#include <vector>

#include "cuda/runtime.h"
#include "cuda/weight_gemm.h"

namespace fp4kit::cuda {

class CublasGemm;  // cuda/cublas_gemm.h

// Largest k (experts per token) the kernels take; DeepSeek V4 routes 6.
inline constexpr int64_t kMaxMoeTopK = 16;

// The routed experts' weights of one layer, as device arrays of descriptors (every expert in the same
// format). GemmWeight arrays live in device memory because the grouped GEMM reads them there.
struct MoeExperts {
  int32_t count = 0;                 // E
  int64_t hidden = 0, inter = 0;     // H, I
  WeightFormat format = WeightFormat::Nvfp4;
  const GemmWeight* w1 = nullptr;    // device [E], each [I, H] (gate)
  const GemmWeight* w3 = nullptr;    // device [E], each [I, H] (up)
  const GemmWeight* w2 = nullptr;    // device [E], each [H, I] (down)
};

// Device copies of the descriptors of E experts' weights (the weight bytes themselves stay where they
// are and must outlive the table). The constructor checks every descriptor on the host: one format,
// w1/w3 [I, H], w2 [H, I], data (and scales, for the scaled formats) not null; InputError naming the
// expert and matrix otherwise.
class MoeExpertTable {
 public:
  MoeExpertTable(const std::vector<GemmWeight>& w1, const std::vector<GemmWeight>& w3,
                 const std::vector<GemmWeight>& w2);
  MoeExperts view() const { return view_; }

 private:
  DeviceBuffer w1_, w3_, w2_;
  MoeExperts view_;
};

// The router's choice for T tokens, on the device, as the router produced it (rows need not be
// sorted). Exactly one of experts_i64 / experts_i32 is set.
struct MoeRouting {
  const int64_t* experts_i64 = nullptr;  // [T, k]
  const int32_t* experts_i32 = nullptr;  // [T, k]
  const float* weights = nullptr;        // [T, k], routed_scaling_factor included
  int64_t tokens = 0;                    // T
  int64_t top_k = 0;                     // k
};

// Every buffer of one call, sized for up to `max_tokens` tokens with `top_k` experts each, for a
// layer of `experts` experts of shape H = `hidden`, I = `inter`. Intermediates are kept until the next
// call, so they can be read back (tests, calibration observers): rows are in sorted order.
class MoeWorkspace {
 public:
  MoeWorkspace(int64_t max_tokens, int64_t top_k, int32_t experts, int64_t hidden, int64_t inter);
  MoeWorkspace(const MoeWorkspace&) = delete;
  MoeWorkspace& operator=(const MoeWorkspace&) = delete;

  int64_t max_tokens() const { return max_tokens_; }
  int64_t top_k() const { return top_k_; }
  int32_t experts() const { return experts_; }
  int64_t hidden() const { return hidden_; }
  int64_t inter() const { return inter_; }
  int64_t max_rows() const { return max_tokens_ * top_k_; }
  // T of the last moe_route_rows call (the rows of the intermediates are T·k).
  int64_t routed_tokens() const { return routed_tokens_; }

  // Device views of the last call's intermediates (R = T·k rows in expert order).
  const int32_t* expert_offsets() const { return offsets_.data<int32_t>(); }  // [E + 1]
  const int32_t* sorted_experts() const { return keys_out_.data<int32_t>(); } // [R]; E marks a bad id
  const int32_t* slot_of_row() const { return slots_out_.data<int32_t>(); }   // [R]: t·k + j
  const int32_t* row_of_slot() const { return row_of_slot_.data<int32_t>(); } // [T·k]: inverse
  const uint16_t* sorted_x() const { return sorted_x_.data<uint16_t>(); }     // [R, H] BF16
  // [R, I] BF16: the w2 input without the routing weight (the CPU observer's unweighted input; the
  // weighted one is weight[slot_of_row[r]] · h[r]).
  const uint16_t* hidden_act() const { return hidden_act_.data<uint16_t>(); }
  const float* expert_out() const { return expert_out_.data<float>(); }       // [R, H] F32 (w2 output)

  // Fills every intermediate buffer with NaN bytes, so that a row a stage fails to write shows up
  // as NaN in the output (tests).
  void poison(StreamHandle stream);

  // Waits for the stream of the last call (it must still exist) and throws InputError naming the
  // token, slot and id if that call's routing held an expert id outside [0, experts).
  void throw_if_bad_routing() const;

 private:
  friend void moe_route_rows(const uint16_t*, const MoeRouting&, MoeWorkspace&, StreamHandle);
  friend bool moe_expert_products_decoded(const std::vector<GemmWeight>&, const std::vector<GemmWeight>&,
                                          const std::vector<GemmWeight>&, const std::vector<int32_t>&, float,
                                          MoeWorkspace&, CublasGemm&, StreamHandle);
  friend void moe_routed_experts_async(const uint16_t*, const MoeRouting&, const MoeExperts&, float, void*,
                                       GemmOutput, MoeWorkspace&, StreamHandle, const float*);

  int64_t max_tokens_, top_k_;
  int32_t experts_;
  int64_t hidden_, inter_;
  int sort_end_bit_ = 0;
  size_t sort_temp_bytes_ = 0;
  DeviceBuffer keys_in_, keys_out_, slots_in_, slots_out_, row_of_slot_, offsets_;
  DeviceBuffer sorted_x_, hidden_act_, expert_out_;
  DeviceBuffer sort_temp_;
  DeviceBuffer bad_record_;        // int64 [3]: bad slot count, first bad slot, its id
  PinnedBuffer bad_record_host_;
  StreamHandle last_stream_ = nullptr;  // of the last moe_route_rows
  int64_t routed_tokens_ = 0;
};

// Stage 1 alone: validates the routing (shapes, one id pointer, T <= max_tokens; InputError), sorts
// the slots by expert, gathers x [T, H] BF16 into ws.sorted_x(), writes the offsets and both
// permutations, and the bad-id record that throw_if_bad_routing reads. Asynchronous.
void moe_route_rows(const uint16_t* x, const MoeRouting& routing, MoeWorkspace& ws, StreamHandle stream);

// Stages 2 and 3 for batches whose experts have many rows each, after moe_route_rows: each
// expert's w1, w3 and w2 (host descriptors) decoded to BF16 and its rows multiplied by cuBLASLt,
// the clamped SwiGLU between them on the F32 sums, rounded to BF16 — the grouped kernels' products
// with the F32 sums in another order. `offsets` are ws.expert_offsets() copied to the host. False,
// with nothing done, where a weight does not decode to BF16 exactly (NVFP4: its global scale; FP8
// blocks with F32 scales). Synchronises the stream before returning (its scratch is freed).
bool moe_expert_products_decoded(const std::vector<GemmWeight>& w1, const std::vector<GemmWeight>& w3,
                                 const std::vector<GemmWeight>& w2, const std::vector<int32_t>& offsets,
                                 float swiglu_limit, MoeWorkspace& ws, CublasGemm& gemm, StreamHandle stream);

// Stage 4 alone: out [T, H] (F32 or BF16) from ws.expert_out() and the routing weights, after
// moe_route_rows of the same routing. With `add` (F32 [T, H]), out = the sum + add (one F32 addition
// after the sum, then the output's rounding): the shared expert's output joins without a launch of
// its own. Asynchronous.
void moe_combine(const MoeRouting& routing, const MoeWorkspace& ws, void* out, GemmOutput out_type,
                 StreamHandle stream, const float* add = nullptr);

// All four stages, asynchronous: out [T, H] = the routed experts' sum for x [T, H] BF16 (after
// ffn_norm), plus `add` where given (moe_combine). `swiglu_limit` <= 0: no clamp. Call
// ws.throw_if_bad_routing() before trusting `out` when the routing may hold bad ids.
void moe_routed_experts_async(const uint16_t* x, const MoeRouting& routing, const MoeExperts& experts,
                              float swiglu_limit, void* out, GemmOutput out_type, MoeWorkspace& ws,
                              StreamHandle stream, const float* add = nullptr);

// The same, then waits for the stream and throws InputError for an expert id out of range.
void moe_routed_experts(const uint16_t* x, const MoeRouting& routing, const MoeExperts& experts,
                        float swiglu_limit, void* out, GemmOutput out_type, MoeWorkspace& ws,
                        StreamHandle stream);

// The calibration observer's view of the last call's routed-expert inputs: for each expert e,
// out[2e] = max |v| over its rows and out[2e + 1] = max over its rows of |w · max |v_row||, w being
// the routing weight of the row's slot; NaN when any value is NaN, 0 for an expert with no rows.
// Gate: the w1/w3 input (rows of sorted_x); Down: the w2 input (rows of hidden_act, BF16 as the
// product reads it). `routing` is the one of the last call; out: device [2·experts]; scratch:
// device [T·k] floats. Asynchronous.
enum class MoeExpertInput : uint8_t { Gate, Down };
void moe_expert_input_amax(const MoeWorkspace& ws, const MoeRouting& routing, MoeExpertInput input, float* out,
                           float* scratch, StreamHandle stream);

}  // namespace fp4kit::cuda
