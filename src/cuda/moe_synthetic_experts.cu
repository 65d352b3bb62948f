// Made-up expert weights for timing, and the timing loop.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/moe_synthetic_experts.h"

namespace fp4kit::cuda {
namespace {

enum class FillKind : uint8_t { RandomBytes, E4m3Scale, E8m0Scale, Fp8Element, Bf16Element };

__device__ __forceinline__ uint32_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

// Byte i of a region (a BF16 element fills two bytes from one hash of its index).
__global__ void synthetic_fill_kernel(uint8_t* __restrict__ dst, size_t bytes, FillKind kind, uint64_t seed) {
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < bytes;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint32_t h = mix(seed * 0x9E3779B97F4A7C15ull + (kind == FillKind::Bf16Element ? i / 2 : i));
    uint8_t b = 0;
    switch (kind) {
      case FillKind::RandomBytes: b = static_cast<uint8_t>(h); break;
      case FillKind::E4m3Scale: b = static_cast<uint8_t>(0x28 + h % 24); break;        // about 0.25 .. 1.9
      case FillKind::E8m0Scale: b = static_cast<uint8_t>(118 + h % 7); break;          // 2^-9 .. 2^-3
      case FillKind::Fp8Element: b = static_cast<uint8_t>((h & 0x80) | (h >> 8) % 0x70); break;  // no NaN
      case FillKind::Bf16Element: {
        // sign, exponent 2^-9 .. 2^-2, random mantissa
        const uint16_t bits = static_cast<uint16_t>((h & 0x8000u) | ((118u + (h >> 16) % 8u) << 7) | (h & 0x7Fu));
        b = static_cast<uint8_t>(i % 2 ? bits >> 8 : bits & 0xFF);
        break;
      }
    }
    dst[i] = b;
  }
}

void fill(uint8_t* dst, size_t bytes, FillKind kind, uint64_t seed) {
  if (bytes == 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>(ceil_div(bytes, 256), 65536));
  synthetic_fill_kernel<<<blocks, 256>>>(dst, bytes, kind, seed);
  check_launch("synthetic_fill_kernel", std::to_string(bytes) + " bytes");
}

constexpr size_t align256(size_t n) { return (n + 255) / 256 * 256; }

struct MatrixBytes {
  size_t data = 0, scales = 0;
};

MatrixBytes matrix_bytes(WeightFormat f, int64_t n, int64_t k) {
  const size_t elems = static_cast<size_t>(n) * static_cast<size_t>(k);
  switch (f) {
    case WeightFormat::Nvfp4: return {elems / 2, elems / 16};
    case WeightFormat::Mxfp4: return {elems / 2, elems / 32};
    case WeightFormat::Fp8Block: return {elems, static_cast<size_t>((n + 127) / 128) * static_cast<size_t>((k + 127) / 128)};
    case WeightFormat::Bf16: return {elems * 2, 0};
  }
  return {};
}

}  // namespace

SyntheticExperts::SyntheticExperts(int32_t experts, int64_t hidden, int64_t inter, WeightFormat format,
                                   uint64_t seed) {
  if (experts < 1 || hidden < 1 || inter < 1) throw InputError("synthetic experts: every size must be at least 1");
  const MatrixBytes up = matrix_bytes(format, inter, hidden), down = matrix_bytes(format, hidden, inter);
  const size_t up_size = align256(up.data) + align256(up.scales), down_size = align256(down.data) + align256(down.scales);
  const size_t per_expert = 2 * up_size + down_size;
  bytes_per_expert_ = 2 * (up.data + up.scales) + down.data + down.scales;
  bytes_ = DeviceBuffer(per_expert * static_cast<size_t>(experts),
                        "synthetic weights of " + std::to_string(experts) + " experts");
  uint8_t* base = bytes_.data<uint8_t>();
  const FillKind data_kind = format == WeightFormat::Fp8Block ? FillKind::Fp8Element
                             : format == WeightFormat::Bf16   ? FillKind::Bf16Element
                                                              : FillKind::RandomBytes;
  const FillKind scale_kind = format == WeightFormat::Nvfp4 ? FillKind::E4m3Scale : FillKind::E8m0Scale;
  const size_t data_all = per_expert * static_cast<size_t>(experts);
  // Everything is filled as data first, then each scale region is filled over.
  fill(base, data_all, data_kind, seed);
  std::vector<GemmWeight> w1(experts), w3(experts), w2(experts);
  for (int32_t e = 0; e < experts; ++e) {
    uint8_t* p = base + per_expert * static_cast<size_t>(e);
    auto describe = [&](GemmWeight& w, uint8_t* at, const MatrixBytes& m, int64_t n, int64_t k) {
      w.format = format;
      w.n = n;
      w.k = k;
      w.data = at;
      w.scales = m.scales ? at + align256(m.data) : nullptr;
      w.global_scale = format == WeightFormat::Nvfp4 ? 1.0f / 64 : 1.0f;
    };
    describe(w1[e], p, up, inter, hidden);
    describe(w3[e], p + up_size, up, inter, hidden);
    describe(w2[e], p + 2 * up_size, down, hidden, inter);
  }
  if (up.scales) {
    for (int32_t e = 0; e < experts; ++e) {
      fill(static_cast<uint8_t*>(const_cast<void*>(w1[e].scales)), up.scales, scale_kind, seed + 3 * e + 1);
      fill(static_cast<uint8_t*>(const_cast<void*>(w3[e].scales)), up.scales, scale_kind, seed + 3 * e + 2);
      fill(static_cast<uint8_t*>(const_cast<void*>(w2[e].scales)), down.scales, scale_kind, seed + 3 * e + 3);
    }
  }
  check(cudaDeviceSynchronize(), "filling synthetic expert weights");
  table_ = std::make_unique<MoeExpertTable>(w1, w3, w2);
}

MoeTiming time_routed_experts(const SyntheticExperts& experts, int64_t tokens, int64_t top_k, float swiglu_limit,
                              int iterations, uint64_t seed) {
  const MoeExperts ex = experts.view();
  if (tokens < 1 || top_k < 1 || top_k > ex.count || iterations < 1)
    throw InputError("time_routed_experts: T=" + std::to_string(tokens) + " k=" + std::to_string(top_k) +
                     " of E=" + std::to_string(ex.count) + ", " + std::to_string(iterations) + " iterations");
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(tokens * top_k));
  std::vector<float> weights(ids.size());
  std::vector<int32_t> order(static_cast<size_t>(ex.count));
  std::set<int32_t> active;
  std::uniform_real_distribution<float> wdist(0.05f, 0.5f);
  for (int64_t t = 0; t < tokens; ++t) {
    std::iota(order.begin(), order.end(), 0);
    for (int64_t j = 0; j < top_k; ++j) {
      const size_t pick = j + rng() % (order.size() - j);
      std::swap(order[j], order[pick]);
      ids[t * top_k + j] = order[j];
      weights[t * top_k + j] = wdist(rng);
      active.insert(order[j]);
    }
  }
  std::vector<uint16_t> x(static_cast<size_t>(tokens * ex.hidden));
  for (auto& v : x) v = static_cast<uint16_t>(0x3C00 + rng() % 0x0300) | static_cast<uint16_t>((rng() & 1) << 15);

  Stream stream;
  DeviceBuffer d_ids(ids.size() * 4, "routing ids"), d_w(weights.size() * 4, "routing weights");
  DeviceBuffer d_x(x.size() * 2, "x"), d_out(x.size() * 2, "out");
  copy_to_device(d_ids.data(), ids.data(), d_ids.bytes(), stream);
  copy_to_device(d_w.data(), weights.data(), d_w.bytes(), stream);
  copy_to_device(d_x.data(), x.data(), d_x.bytes(), stream);
  MoeWorkspace ws(tokens, top_k, ex.count, ex.hidden, ex.inter);
  MoeRouting routing;
  routing.experts_i32 = d_ids.data<int32_t>();
  routing.weights = d_w.data<float>();
  routing.tokens = tokens;
  routing.top_k = top_k;
  auto call = [&] {
    moe_routed_experts_async(d_x.data<uint16_t>(), routing, ex, swiglu_limit, d_out.data(), GemmOutput::Bf16, ws,
                             stream.get());
  };
  for (int i = 0; i < 3; ++i) call();
  stream.synchronize("routed experts warm-up");
  ws.throw_if_bad_routing();

  MoeTiming timing;
  timing.active_experts = static_cast<int64_t>(active.size());
  timing.active_weight_bytes = static_cast<double>(active.size()) * static_cast<double>(experts.bytes_per_expert());
  Event start, end;
  start.record(stream);
  for (int i = 0; i < iterations; ++i) call();
  end.record(stream);
  end.synchronize();
  timing.ms_per_call = Event::elapsed_ms(start, end) / iterations;

  // The same calls as one graph, where every stage can be captured.
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  bool captured = cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal) == cudaSuccess;
  if (captured) {
    try {
      call();
    } catch (const Error&) {
      captured = false;
    }
    captured = cudaStreamEndCapture(stream.get(), &graph) == cudaSuccess && captured;
    captured = captured && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
  }
  cudaGetLastError();  // a refused capture leaves its error here; the plain timing stands
  if (captured) {
    check(cudaGraphLaunch(exec, stream.get()), "routed experts graph warm-up");
    stream.synchronize("routed experts graph warm-up");
    start.record(stream);
    for (int i = 0; i < iterations; ++i) check(cudaGraphLaunch(exec, stream.get()), "routed experts graph");
    end.record(stream);
    end.synchronize();
    timing.ms_per_call_graph = Event::elapsed_ms(start, end) / iterations;
  }
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  return timing;
}

}  // namespace fp4kit::cuda
