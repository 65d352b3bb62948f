// Stage 1 of the routed experts: the (token, slot) pairs sorted by expert, x gathered into that order,
// the group offsets and the inverse permutation, and the record of the first out-of-range id. A
// decode step's few slots take one launch (route_small_kernel), more take CUB's radix sort.
#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/check.cuh"
#include "cuda/dependent_launch.cuh"
#include "cuda/moe_expert_sort.h"
#include "cuda/moe_experts.h"

namespace fp4kit::cuda {
namespace {

constexpr int kKeyThreads = 256;
constexpr int kPlaceThreads = 128;

// keys[i] = the expert of slot i, or `experts` for an id outside [0, experts) (sorted past every
// valid one); slots[i] = i.
template <class Id>
__global__ void expert_keys_kernel(const Id* __restrict__ ids, int32_t items, int32_t experts,
                                   uint32_t* __restrict__ keys, int32_t* __restrict__ slots) {
  const int32_t i = static_cast<int32_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= items) return;
  const Id e = ids[i];
  keys[i] = (e >= 0 && e < static_cast<Id>(experts)) ? static_cast<uint32_t>(e) : static_cast<uint32_t>(experts);
  slots[i] = i;
}

// Block p copies x's row of sorted slot p to sorted_x row p and records p as that slot's row.
// Thread g <= experts (counted over the whole grid) writes offsets[g] = the first sorted row whose key
// is >= g (a binary search of the sorted keys), except offsets[experts] = rows, so that rows with a bad
// id belong to the last expert and are computed like any other row; thread `experts` also writes the
// bad-id record {count, first slot, its id}: the stable sort put the bad slots last, in slot order.
template <bool kVector>
__global__ void place_rows_kernel(const uint16_t* __restrict__ x, int64_t hidden, int32_t top_k,
                                  const uint32_t* __restrict__ keys, const int32_t* __restrict__ slots,
                                  int32_t rows, int32_t experts, const int64_t* ids_i64, const int32_t* ids_i32,
                                  uint16_t* __restrict__ sorted_x, int32_t* __restrict__ row_of_slot,
                                  int32_t* __restrict__ offsets, int64_t* __restrict__ bad_record) {
  const int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g <= experts) {
    int32_t lo = 0, hi = rows;
    while (lo < hi) {
      const int32_t mid = lo + (hi - lo) / 2;
      if (keys[mid] < static_cast<uint32_t>(g)) lo = mid + 1;
      else hi = mid;
    }
    offsets[g] = g == experts ? rows : lo;
    if (g == experts) {
      const int32_t bad = rows - lo;
      bad_record[0] = bad;
      bad_record[1] = -1;
      bad_record[2] = 0;
      if (bad > 0) {
        const int32_t slot = slots[lo];
        bad_record[1] = slot;
        bad_record[2] = ids_i64 ? ids_i64[slot] : static_cast<int64_t>(ids_i32[slot]);
      }
    }
  }
  const int32_t p = static_cast<int32_t>(blockIdx.x);
  if (p >= rows) return;
  const int32_t slot = slots[p];
  if (threadIdx.x == 0) row_of_slot[slot] = p;
  const int64_t t = slot / top_k;
  if constexpr (kVector) {
    const uint4* src = reinterpret_cast<const uint4*>(x + t * hidden);
    uint4* dst = reinterpret_cast<uint4*>(sorted_x + static_cast<int64_t>(p) * hidden);
    for (int64_t i = threadIdx.x; i < hidden / 8; i += blockDim.x) dst[i] = src[i];
  } else {
    const uint16_t* src = x + t * hidden;
    uint16_t* dst = sorted_x + static_cast<int64_t>(p) * hidden;
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = src[i];
  }
}

// A decode step's few slots (items <= kSmallItems) in one launch instead of keys, CUB's sort and
// place_rows: every block ranks all slots in shared memory, rank(i) = #{j : key_j < key_i} +
// #{j < i : key_j = key_i} (the position a stable sort by key gives slot i), and then does
// place_rows_kernel's work for its sorted row with the same results; block p also writes the sorted
// key and slot of row p.
constexpr int kSmallItems = 256;

template <class Id, bool kVector>
__global__ void route_small_kernel(const Id* __restrict__ ids, const uint16_t* __restrict__ x, int64_t hidden,
                                   int32_t top_k, int32_t items, int32_t experts, uint32_t* __restrict__ keys_out,
                                   int32_t* __restrict__ slots_out, uint16_t* __restrict__ sorted_x,
                                   int32_t* __restrict__ row_of_slot, int32_t* __restrict__ offsets,
                                   int64_t* __restrict__ bad_record) {
  wait_for_previous_grid();  // launched dependent: nothing read before this
  allow_next_grid();  // the next product may launch now (cuda/dependent_launch.cuh)
  __shared__ uint32_t key[kSmallItems];
  __shared__ int32_t slot_at[kSmallItems];
  for (int32_t i = threadIdx.x; i < items; i += blockDim.x) {
    const Id e = ids[i];
    key[i] = (e >= 0 && e < static_cast<Id>(experts)) ? static_cast<uint32_t>(e) : static_cast<uint32_t>(experts);
  }
  __syncthreads();
  for (int32_t i = threadIdx.x; i < items; i += blockDim.x) {
    int32_t rank = 0;
    for (int32_t j = 0; j < items; ++j) rank += key[j] < key[i] || (key[j] == key[i] && j < i);
    slot_at[rank] = i;
  }
  __syncthreads();
  const int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g <= experts) {
    int32_t below = 0;  // slots whose key is below g: the first sorted row of expert g
    for (int32_t j = 0; j < items; ++j) below += key[j] < static_cast<uint32_t>(g);
    offsets[g] = g == experts ? items : below;
    if (g == experts) {
      const int32_t bad = items - below;
      bad_record[0] = bad;
      bad_record[1] = -1;
      bad_record[2] = 0;
      if (bad > 0) {
        const int32_t slot = slot_at[below];
        bad_record[1] = slot;
        bad_record[2] = static_cast<int64_t>(ids[slot]);
      }
    }
  }
  const int32_t p = static_cast<int32_t>(blockIdx.x);
  if (p >= items) return;
  const int32_t slot = slot_at[p];
  if (threadIdx.x == 0) {
    row_of_slot[slot] = p;
    keys_out[p] = key[slot];
    slots_out[p] = slot;
  }
  const int64_t t = slot / top_k;
  if constexpr (kVector) {
    const uint4* src = reinterpret_cast<const uint4*>(x + t * hidden);
    uint4* dst = reinterpret_cast<uint4*>(sorted_x + static_cast<int64_t>(p) * hidden);
    for (int64_t i = threadIdx.x; i < hidden / 8; i += blockDim.x) dst[i] = src[i];
  } else {
    const uint16_t* src = x + t * hidden;
    uint16_t* dst = sorted_x + static_cast<int64_t>(p) * hidden;
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = src[i];
  }
}

std::string shape_text(int64_t tokens, int64_t top_k, int32_t experts, int64_t hidden) {
  return "T=" + std::to_string(tokens) + " k=" + std::to_string(top_k) + " E=" + std::to_string(experts) +
         " H=" + std::to_string(hidden);
}

}  // namespace

void moe_route_rows(const uint16_t* x, const MoeRouting& r, MoeWorkspace& ws, StreamHandle stream) {
  const auto shape = [&] { return shape_text(r.tokens, r.top_k, ws.experts_, ws.hidden_); };
  if ((r.experts_i64 == nullptr) == (r.experts_i32 == nullptr))
    throw InputError("moe_route_rows [" + shape() +
                     "]: exactly one of the int64 and int32 expert id arrays must be given");
  if (r.top_k != ws.top_k_)
    throw InputError("moe_route_rows [" + shape() + "]: the routing has k=" + std::to_string(r.top_k) +
                     " experts per token, the workspace was sized for k=" + std::to_string(ws.top_k_));
  if (r.tokens < 0) throw InputError("moe_route_rows [" + shape() + "]: negative token count");
  if (r.tokens > ws.max_tokens_)
    throw InputError("moe_route_rows [" + shape() + "]: " + std::to_string(r.tokens) +
                     " tokens exceed the workspace, sized for at most " + std::to_string(ws.max_tokens_));
  if (r.tokens > 0 && x == nullptr) throw InputError("moe_route_rows [" + shape() + "]: x is null");

  const int32_t items = static_cast<int32_t>(r.tokens * r.top_k);
  const int32_t experts = ws.experts_;
  const bool vector = ws.hidden_ % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const unsigned blocks = std::max<unsigned>(static_cast<unsigned>(items), ceil_div(experts + 1, kPlaceThreads));
  if (items <= kSmallItems) {
    auto* keys = ws.keys_out_.data<uint32_t>();
    auto* slots = ws.slots_out_.data<int32_t>();
    auto* sx = ws.sorted_x_.data<uint16_t>();
    auto* rows = ws.row_of_slot_.data<int32_t>();
    auto* offsets = ws.offsets_.data<int32_t>();
    auto* record = ws.bad_record_.data<int64_t>();
    const int32_t k = static_cast<int32_t>(r.top_k);
    const auto launch = [&](auto kernel, const auto* ids) {
      check(launch_dependent(kernel, dim3(blocks), dim3(kPlaceThreads), 0, stream, ids, x, ws.hidden_, k, items, experts, keys,
                             slots, sx, rows, offsets, record),
            "route_small_kernel launch");
    };
    if (r.experts_i64) {
      if (vector) launch(route_small_kernel<int64_t, true>, r.experts_i64);
      else launch(route_small_kernel<int64_t, false>, r.experts_i64);
    } else {
      if (vector) launch(route_small_kernel<int32_t, true>, r.experts_i32);
      else launch(route_small_kernel<int32_t, false>, r.experts_i32);
    }
    check_launch("route_small_kernel", shape);
    ws.routed_tokens_ = r.tokens;
    ws.last_stream_ = stream;
    return;
  }
  auto* keys_in = ws.keys_in_.data<uint32_t>();
  auto* keys_out = ws.keys_out_.data<uint32_t>();
  auto* slots_in = ws.slots_in_.data<int32_t>();
  auto* slots_out = ws.slots_out_.data<int32_t>();
  if (items > 0) {
    if (r.experts_i64)
      expert_keys_kernel<<<ceil_div(items, kKeyThreads), kKeyThreads, 0, stream>>>(r.experts_i64, items, experts,
                                                                                    keys_in, slots_in);
    else
      expert_keys_kernel<<<ceil_div(items, kKeyThreads), kKeyThreads, 0, stream>>>(r.experts_i32, items, experts,
                                                                                    keys_in, slots_in);
    check_launch("expert_keys_kernel", shape);
    sort_slots_by_expert(ws.sort_temp_.data(), ws.sort_temp_.bytes(), keys_in, keys_out, slots_in, slots_out, items,
                         ws.sort_end_bit_, stream);
  }

  if (vector)
    place_rows_kernel<true><<<blocks, kPlaceThreads, 0, stream>>>(
        x, ws.hidden_, static_cast<int32_t>(r.top_k), keys_out, slots_out, items, experts, r.experts_i64,
        r.experts_i32, ws.sorted_x_.data<uint16_t>(), ws.row_of_slot_.data<int32_t>(), ws.offsets_.data<int32_t>(),
        ws.bad_record_.data<int64_t>());
  else
    place_rows_kernel<false><<<blocks, kPlaceThreads, 0, stream>>>(
        x, ws.hidden_, static_cast<int32_t>(r.top_k), keys_out, slots_out, items, experts, r.experts_i64,
        r.experts_i32, ws.sorted_x_.data<uint16_t>(), ws.row_of_slot_.data<int32_t>(), ws.offsets_.data<int32_t>(),
        ws.bad_record_.data<int64_t>());
  check_launch("place_rows_kernel", shape);

  ws.routed_tokens_ = r.tokens;
  ws.last_stream_ = stream;
}

}  // namespace fp4kit::cuda
