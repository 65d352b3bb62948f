// The routed experts of a layer: workspace, expert table and the four stages in order.
#include <algorithm>
#include <bit>
#include <climits>
#include <cstring>
#include <string>

#include "cuda/check.cuh"
#include "cuda/moe_expert_sort.h"
#include "cuda/moe_experts.h"

namespace fp4kit::cuda {
namespace {

const char* format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::Nvfp4: return "NVFP4";
    case WeightFormat::Mxfp4: return "MXFP4";
    case WeightFormat::Fp8Block: return "FP8 block";
    case WeightFormat::Bf16: return "BF16";
  }
  return "unknown";
}

void check_expert_weight(const GemmWeight& w, WeightFormat format, int64_t n, int64_t k, size_t expert,
                         const char* matrix) {
  const std::string what = "expert " + std::to_string(expert) + " " + matrix;
  if (w.format != format)
    throw InputError(what + " is " + format_name(w.format) + ", expert 0 is " + format_name(format) +
                     " (one format per layer)");
  if (w.n != n || w.k != k)
    throw InputError(what + " is [" + std::to_string(w.n) + ", " + std::to_string(w.k) + "], expected [" +
                     std::to_string(n) + ", " + std::to_string(k) + "]");
  if (w.data == nullptr) throw InputError(what + " has no data");
  if (format != WeightFormat::Bf16 && w.scales == nullptr) throw InputError(what + " has no scales");
  // The decode kernels read codes 16 bytes and scales 2 bytes at a time.
  if (reinterpret_cast<uintptr_t>(w.data) % 16 != 0) throw InputError(what + ": data is not 16-byte aligned");
  if (format != WeightFormat::Bf16 && reinterpret_cast<uintptr_t>(w.scales) % 2 != 0)
    throw InputError(what + ": scales are not 2-byte aligned");
}

std::string workspace_shape(int64_t max_tokens, int64_t top_k, int32_t experts, int64_t hidden, int64_t inter) {
  return "max T=" + std::to_string(max_tokens) + " k=" + std::to_string(top_k) + " E=" + std::to_string(experts) +
         " H=" + std::to_string(hidden) + " I=" + std::to_string(inter);
}

// The sizes are checked before any member allocates.
int64_t checked_max_tokens(int64_t max_tokens, int64_t top_k, int32_t experts, int64_t hidden, int64_t inter) {
  const std::string shape = workspace_shape(max_tokens, top_k, experts, hidden, inter);
  if (max_tokens < 1 || top_k < 1 || top_k > kMaxMoeTopK || experts < 1 || experts > (1 << 30) || hidden < 1 ||
      inter < 1)
    throw InputError("MoE workspace [" + shape + "]: each size must be at least 1, k at most " +
                     std::to_string(kMaxMoeTopK));
  if (max_tokens > INT32_MAX / top_k) throw InputError("MoE workspace [" + shape + "]: more than 2^31 rows");
  return max_tokens;
}

// One grouped product over the rows sorted by expert: expert e's rows times its weight [n, k].
GroupedGemm expert_product(const MoeExperts& experts, const uint16_t* x, int64_t rows, const int32_t* offsets, int64_t n,
                           int64_t k, const GemmWeight* weights, void* y, GemmOutput out) {
  GroupedGemm g;
  g.x = x;
  g.rows = rows;
  g.offsets = offsets;
  g.groups = experts.count;
  g.n = n;
  g.k = k;
  g.format = experts.format;
  g.weights = weights;
  g.y = y;
  g.out = out;
  return g;
}

}  // namespace

MoeExpertTable::MoeExpertTable(const std::vector<GemmWeight>& w1, const std::vector<GemmWeight>& w3,
                               const std::vector<GemmWeight>& w2) {
  if (w1.empty() || w1.size() != w3.size() || w1.size() != w2.size())
    throw InputError("expert table: " + std::to_string(w1.size()) + " w1, " + std::to_string(w3.size()) + " w3 and " +
                     std::to_string(w2.size()) + " w2 weights (expected one of each per expert, at least one)");
  if (w1.size() > static_cast<size_t>(INT32_MAX / 2)) throw InputError("expert table: too many experts");
  const WeightFormat format = w1[0].format;
  const int64_t inter = w1[0].n, hidden = w1[0].k;
  if (inter <= 0 || hidden <= 0) throw InputError("expert 0 w1 has an empty shape");
  for (size_t e = 0; e < w1.size(); ++e) {
    check_expert_weight(w1[e], format, inter, hidden, e, "w1");
    check_expert_weight(w3[e], format, inter, hidden, e, "w3");
    check_expert_weight(w2[e], format, hidden, inter, e, "w2");
  }
  w1_ = upload_weight_descriptors(w1, "expert w1 descriptors");
  w3_ = upload_weight_descriptors(w3, "expert w3 descriptors");
  w2_ = upload_weight_descriptors(w2, "expert w2 descriptors");
  view_ = MoeExperts{static_cast<int32_t>(w1.size()), hidden, inter, format, w1_.data<GemmWeight>(),
                     w3_.data<GemmWeight>(), w2_.data<GemmWeight>()};
}

MoeWorkspace::MoeWorkspace(int64_t max_tokens, int64_t top_k, int32_t experts, int64_t hidden, int64_t inter)
    : max_tokens_(checked_max_tokens(max_tokens, top_k, experts, hidden, inter)),
      top_k_(top_k),
      experts_(experts),
      hidden_(hidden),
      inter_(inter),
      bad_record_host_(3 * sizeof(int64_t), "MoE expert id check record (host)") {
  const std::string shape = workspace_shape(max_tokens, top_k, experts, hidden, inter);
  const size_t rows = static_cast<size_t>(max_tokens * top_k);
  keys_in_ = DeviceBuffer(rows * 4, "MoE expert keys [" + shape + "]");
  keys_out_ = DeviceBuffer(rows * 4, "MoE sorted expert keys [" + shape + "]");
  slots_in_ = DeviceBuffer(rows * 4, "MoE slots [" + shape + "]");
  slots_out_ = DeviceBuffer(rows * 4, "MoE sorted slots [" + shape + "]");
  row_of_slot_ = DeviceBuffer(rows * 4, "MoE inverse permutation [" + shape + "]");
  offsets_ = DeviceBuffer(static_cast<size_t>(experts + 1) * 4, "MoE expert offsets [" + shape + "]");
  sorted_x_ = DeviceBuffer(rows * static_cast<size_t>(hidden) * 2, "MoE sorted x [" + shape + "]");
  hidden_act_ = DeviceBuffer(rows * static_cast<size_t>(inter) * 2, "MoE SwiGLU output [" + shape + "]");
  expert_out_ = DeviceBuffer(rows * static_cast<size_t>(hidden) * 4, "MoE expert outputs [" + shape + "]");
  // Keys up to `experts` (the mark of a bad id) must fit in the sorted bits.
  sort_end_bit_ = std::bit_width(static_cast<uint32_t>(experts));
  // CUB picks its algorithm by size, so the largest need over the sizes a call may have is taken.
  for (int64_t n = static_cast<int64_t>(rows); n > 0; n /= 2)
    sort_temp_bytes_ = std::max(sort_temp_bytes_, expert_sort_temp_bytes(n, sort_end_bit_));
  sort_temp_ = DeviceBuffer(std::max<size_t>(sort_temp_bytes_, 16), "MoE sort temporary storage [" + shape + "]");
  bad_record_ = DeviceBuffer(3 * sizeof(int64_t), "MoE expert id check record");
  std::memset(bad_record_host_.data(), 0, bad_record_host_.bytes());
}

void MoeWorkspace::poison(StreamHandle stream) {
  for (DeviceBuffer* b : {&keys_out_, &slots_out_, &row_of_slot_, &offsets_, &sorted_x_, &hidden_act_, &expert_out_})
    check(cudaMemsetAsync(b->data(), 0xFF, b->bytes(), stream), "poisoning the MoE workspace");
}

void MoeWorkspace::throw_if_bad_routing() const {
  if (last_stream_ == nullptr) return;  // no call yet
  check(cudaMemcpyAsync(bad_record_host_.data(), bad_record_.data(), bad_record_.bytes(), cudaMemcpyDeviceToHost,
                        last_stream_),
        "copy of the expert id check record");
  check(cudaStreamSynchronize(last_stream_), "waiting for the routed experts");
  const int64_t* rec = bad_record_host_.data<int64_t>();
  if (rec[0] > 0) {
    const int64_t slot = rec[1];
    throw InputError("routing: token " + std::to_string(slot / top_k_) + " slot " + std::to_string(slot % top_k_) +
                     " names expert " + std::to_string(rec[2]) + ", outside [0, " + std::to_string(experts_) + ") (" +
                     std::to_string(rec[0]) + " such slot" + (rec[0] == 1 ? "" : "s") + ")");
  }
}

void moe_routed_experts_async(const uint16_t* x, const MoeRouting& routing, const MoeExperts& experts,
                              float swiglu_limit, void* out, GemmOutput out_type, MoeWorkspace& ws,
                              StreamHandle stream, const float* add) {
  const std::string shape = "T=" + std::to_string(routing.tokens) + " k=" + std::to_string(routing.top_k) + " E=" +
                            std::to_string(experts.count) + " H=" + std::to_string(experts.hidden) + " I=" +
                            std::to_string(experts.inter);
  if (experts.count != ws.experts() || experts.hidden != ws.hidden() || experts.inter != ws.inter())
    throw InputError("routed experts [" + shape + "]: the workspace was sized for E=" + std::to_string(ws.experts()) +
                     " H=" + std::to_string(ws.hidden()) + " I=" + std::to_string(ws.inter()));
  if (!experts.w1 || !experts.w3 || !experts.w2)
    throw InputError("routed experts [" + shape + "]: a weight descriptor array is null");
  if (routing.tokens > 0 && (routing.weights == nullptr || out == nullptr))
    throw InputError("routed experts [" + shape + "]: the routing weights or the output are null");

  moe_route_rows(x, routing, ws, stream);
  const int64_t rows = routing.tokens * routing.top_k;
  if (rows == 0) return;

  // w1/w3 with the clamped SwiGLU -> h BF16 [rows, I]; then w2 -> y F32 [rows, H].
  GroupedGemm up = expert_product(experts, ws.sorted_x(), rows, ws.expert_offsets(), experts.inter, experts.hidden,
                                  experts.w1, ws.hidden_act_.data<uint16_t>(), GemmOutput::Bf16);
  up.up = experts.w3;
  up.swiglu_limit = swiglu_limit;
  grouped_weight_gemm(up, stream);
  grouped_weight_gemm(expert_product(experts, ws.hidden_act(), rows, ws.expert_offsets(), experts.hidden,
                                     experts.inter, experts.w2, ws.expert_out_.data<float>(), GemmOutput::F32),
                      stream);

  moe_combine(routing, ws, out, out_type, stream, add);
}

void moe_routed_experts(const uint16_t* x, const MoeRouting& routing, const MoeExperts& experts, float swiglu_limit,
                        void* out, GemmOutput out_type, MoeWorkspace& ws, StreamHandle stream) {
  moe_routed_experts_async(x, routing, experts, swiglu_limit, out, out_type, ws, stream);
  check(cudaStreamSynchronize(stream), [&] { return "routed experts (T=" + std::to_string(routing.tokens) + ")"; });
  ws.throw_if_bad_routing();
}

}  // namespace fp4kit::cuda
