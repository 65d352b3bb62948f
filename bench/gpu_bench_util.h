#pragma once
// What the GPU kernel benchmark needs besides the kernels: random device data (never zeros), sets of
// operand copies large enough that the L2 cannot hold them, and timing by CUDA events around
// replays of a captured CUDA graph (launch gaps out), median of several repetitions.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "cuda/check.cuh"
#include "cuda/moe_experts.h"
#include "cuda/runtime.h"
#include "cuda/weight_gemm.h"
#include "formats/fp8_block.h"

namespace fp4kit::bench {

using cuda::DeviceBuffer;
using cuda::Stream;

// ---- random data ---------------------------------------------------------------------------

// What a random buffer holds; every kind is finite and non-zero almost everywhere.
enum class Fill : uint8_t {
  Bf16,       // magnitudes 2^-8 .. 2^2, random sign and mantissa
  F32,        // the same range in f32
  AnyByte,    // packed E2M1 pairs (every byte is two valid codes)
  E4m3Value,  // FP8 weights: any byte but the two NaNs
  E4m3Scale,  // NVFP4 block scales: positive, 0.5 .. 3.75
  E8m0Scale,  // MXFP4 / FP8-block scales: 2^-7 .. 2^0
};
inline constexpr size_t kFillKinds = 6;

inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One 64 MiB random pool per kind on the device (and its host copy); buffers are filled by device
// copies out of the pool at varying offsets, so gigabytes of random operands cost no host time.
class RandomPools {
 public:
  static constexpr size_t kPoolBytes = size_t{64} << 20;

  explicit RandomPools(const Stream& s) : s_(s) {}

  const std::vector<uint8_t>& host(Fill kind) { return pool(kind).host; }

  void fill(void* dst, size_t bytes, Fill kind) {
    Pool& p = pool(kind);
    auto* out = static_cast<uint8_t*>(dst);
    // Start each buffer at a different 256-byte offset of the pool: copies of one operand differ.
    size_t offset = (next_offset_++ * 4099 % (kPoolBytes / 256)) * 256;
    while (bytes > 0) {
      const size_t n = std::min(bytes, kPoolBytes - offset);
      cuda::copy_on_device(out, p.device.data<uint8_t>() + offset, n, s_);
      out += n;
      bytes -= n;
      offset = 0;
    }
  }

 private:
  struct Pool {
    std::vector<uint8_t> host;
    DeviceBuffer device;
  };

  Pool& pool(Fill kind) {
    Pool& p = pools_[static_cast<size_t>(kind)];
    if (!p.host.empty()) return p;
    p.host.resize(kPoolBytes);
    uint64_t state = 0x5EED0000ull + static_cast<uint64_t>(kind);
    auto* b = p.host.data();
    for (size_t i = 0; i < kPoolBytes; i += 8) {
      uint64_t r = splitmix64(state);
      for (int j = 0; j < 8; ++j, r >>= 8) b[i + j] = static_cast<uint8_t>(r);
    }
    if (kind == Fill::Bf16) {
      auto* h = reinterpret_cast<uint16_t*>(b);
      for (size_t i = 0; i < kPoolBytes / 2; ++i)  // sign | exponent 119..129 | mantissa
        h[i] = static_cast<uint16_t>((h[i] & 0x807Fu) | ((119u + (h[i] >> 7 & 0xFFu) % 11u) << 7));
    } else if (kind == Fill::F32) {
      auto* f = reinterpret_cast<uint32_t*>(b);
      for (size_t i = 0; i < kPoolBytes / 4; ++i)
        f[i] = (f[i] & 0x807FFFFFu) | ((119u + (f[i] >> 23 & 0xFFu) % 11u) << 23);
    } else if (kind == Fill::E4m3Value) {
      for (size_t i = 0; i < kPoolBytes; ++i)
        if ((b[i] & 0x7F) == 0x7F) b[i] ^= 1;
    } else if (kind == Fill::E4m3Scale) {
      for (size_t i = 0; i < kPoolBytes; ++i) b[i] = static_cast<uint8_t>(0x30 + b[i] % 0x18);
    } else if (kind == Fill::E8m0Scale) {
      for (size_t i = 0; i < kPoolBytes; ++i) b[i] = static_cast<uint8_t>(120 + b[i] % 8);
    }
    p.device = DeviceBuffer(kPoolBytes, "random pool");
    cuda::copy_to_device(p.device.data(), p.host.data(), kPoolBytes, s_);
    s_.synchronize("random pool upload");
    return p;
  }

  const Stream& s_;
  std::array<Pool, kFillKinds> pools_;
  size_t next_offset_ = 1;
};

// ---- operand copies past the L2 ------------------------------------------------------------

// How many copies of an operand of `bytes` make a set of at least 4x the L2 (2 at the least, so
// that no launch reads what the previous one just read).
inline int copies_past_l2(size_t bytes, size_t l2_bytes, int at_most = 4096) {
  const size_t need = 4 * l2_bytes;
  const size_t copies = bytes == 0 ? 1 : (need + bytes - 1) / bytes;
  return static_cast<int>(std::clamp<size_t>(copies, 2, static_cast<size_t>(at_most)));
}

// `copies` random copies of a `bytes`-byte operand at a 256-byte stride.
struct CopySet {
  DeviceBuffer buf;
  size_t stride = 0;
  int copies = 0;

  CopySet() = default;
  CopySet(size_t bytes, int n, Fill kind, RandomPools& pools, const std::string& what)
      : buf((bytes + 255) / 256 * 256 * static_cast<size_t>(n), what), stride((bytes + 255) / 256 * 256), copies(n) {
    for (int i = 0; i < n; ++i) pools.fill(at(i), bytes, kind);
  }
  void* at(int i) const { return buf.data<uint8_t>() + stride * static_cast<size_t>(i % copies); }
  template <class T>
  T* as(int i) const { return static_cast<T*>(at(i)); }
};

// ---- weights and routings ----------------------------------------------------------------

using cuda::GemmWeight;
using cuda::WeightFormat;

inline const char* format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::Nvfp4: return "nvfp4";
    case WeightFormat::Mxfp4: return "mxfp4";
    case WeightFormat::Fp8Block: return "fp8_block";
    case WeightFormat::Bf16: return "bf16";
  }
  return "?";
}

// Copies of one [N, K] weight in one format, past the L2.
struct WeightSet {
  WeightFormat format;
  int64_t n, k;
  size_t data_bytes = 0, scale_bytes = 0;
  CopySet data, scales;

  WeightSet(WeightFormat f, int64_t n_, int64_t k_, RandomPools& pools, size_t l2_bytes) : format(f), n(n_), k(k_) {
    const auto nk = static_cast<size_t>(n * k);
    Fill data_kind = Fill::AnyByte, scale_kind = Fill::AnyByte;
    switch (f) {
      case WeightFormat::Bf16: data_bytes = nk * 2, scale_bytes = 0, data_kind = Fill::Bf16; break;
      case WeightFormat::Nvfp4: data_bytes = nk / 2, scale_bytes = nk / 16, scale_kind = Fill::E4m3Scale; break;
      case WeightFormat::Mxfp4: data_bytes = nk / 2, scale_bytes = nk / 32, scale_kind = Fill::E8m0Scale; break;
      case WeightFormat::Fp8Block:
        data_bytes = nk, data_kind = Fill::E4m3Value, scale_kind = Fill::E8m0Scale;
        scale_bytes = fp8_scale_dim(static_cast<size_t>(n)) * fp8_scale_dim(static_cast<size_t>(k));
        break;
    }
    const int copies = copies_past_l2(bytes(), l2_bytes);
    data = CopySet(data_bytes, copies, data_kind, pools, std::string(format_name(f)) + " weight copies");
    scales = CopySet(scale_bytes, copies, scale_kind, pools, std::string(format_name(f)) + " scale copies");
  }
  size_t bytes() const { return data_bytes + scale_bytes; }
  int copies() const { return data.copies; }
  GemmWeight at(int i) const {
    GemmWeight w;
    w.format = format, w.n = n, w.k = k, w.data = data.at(i);
    w.scales = scale_bytes ? scales.at(i) : nullptr;
    w.global_scale = format == WeightFormat::Nvfp4 ? 0.01f : 1.0f;
    return w;
  }
};

// One draw of the router's choice: k distinct experts per token, positive weights; on the device,
// and on the host as the per-expert row counts in expert order (the order moe_route_rows sorts in).
struct Routing {
  DeviceBuffer ids, weights;
  cuda::MoeRouting view;
  std::vector<int32_t> count;  // rows per expert
  int active = 0;
};

inline Routing draw_routing(int64_t tokens, int64_t top_k, int32_t experts, uint64_t seed, const Stream& s) {
  if (experts < top_k)
    throw InputError("routing: " + std::to_string(experts) + " experts cannot give " + std::to_string(top_k) + " distinct ones");
  Routing r;
  std::vector<int32_t> ids(static_cast<size_t>(tokens * top_k));
  std::vector<float> w(ids.size());
  std::vector<int32_t> perm(static_cast<size_t>(experts));
  r.count.assign(static_cast<size_t>(experts), 0);
  uint64_t state = seed;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int32_t e = 0; e < experts; ++e) perm[static_cast<size_t>(e)] = e;
    for (int64_t j = 0; j < top_k; ++j) {  // partial Fisher-Yates: k distinct experts
      const auto pick = static_cast<size_t>(j) + splitmix64(state) % static_cast<uint64_t>(experts - j);
      std::swap(perm[static_cast<size_t>(j)], perm[pick]);
      const size_t slot = static_cast<size_t>(t * top_k + j);
      ids[slot] = perm[static_cast<size_t>(j)];
      w[slot] = 0.1f + static_cast<float>(splitmix64(state) % 1000) / 1000.0f;
      ++r.count[static_cast<size_t>(ids[slot])];
    }
  }
  for (int32_t c : r.count) r.active += c > 0;
  r.ids = DeviceBuffer(ids.size() * 4, "routing ids");
  r.weights = DeviceBuffer(w.size() * 4, "routing weights");
  cuda::copy_to_device(r.ids.data(), ids.data(), r.ids.bytes(), s);
  cuda::copy_to_device(r.weights.data(), w.data(), r.weights.bytes(), s);
  s.synchronize("routing upload");
  r.view.experts_i32 = r.ids.data<int32_t>();
  r.view.weights = r.weights.data<float>();
  r.view.tokens = tokens;
  r.view.top_k = top_k;
  return r;
}

// ---- timing --------------------------------------------------------------------------------

struct TimingOptions {
  int reps = 15;            // graph replays timed; the median is reported
  double replay_ms = 2.0;   // how long one replay should take (enough launches to amortize)
  int max_ops = 2000;       // launches captured in one graph at the most
};

struct Timing {
  double us = 0;         // median time of one operation
  double spread = 0;     // (max - min) / median over the repetitions
  bool graph = false;    // timed by graph replay (false: plain launches, capture failed)
  int ops_per_replay = 0;
  std::string capture_error;  // why the graph was not used
};

// Times `enqueue(c)`, which queues one operation on `s` using operand copy c (always < `copies`):
// warm-up over every copy, a captured graph of a multiple of `copies` operations (so consecutive
// operations never share operands), `reps` timed replays, median per operation.
inline Timing time_ops(const Stream& s, int copies, const std::function<void(int)>& enqueue, const TimingOptions& o) {
  Timing t;
  cuda::Event e0, e1;
  // Warm-up (module load, algorithm choice) and a first estimate from plain launches.
  for (int i = 0; i < copies; ++i) enqueue(i % copies);
  s.synchronize("warm-up");
  const int probe = std::max(copies, 3);
  e0.record(s);
  for (int i = 0; i < probe; ++i) enqueue(i % copies);
  e1.record(s);
  e1.synchronize();
  const double est_us = std::max(1e-3, 1e3 * cuda::Event::elapsed_ms(e0, e1) / probe);
  int ops = static_cast<int>(std::ceil(o.replay_ms * 1e3 / est_us));
  ops = std::clamp(ops, 1, std::max(o.max_ops, copies));
  ops = (ops + copies - 1) / copies * copies;
  t.ops_per_replay = ops;

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  try {
    cuda::check(cudaStreamBeginCapture(s.get(), cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    try {
      for (int i = 0; i < ops; ++i) enqueue(i % copies);
    } catch (...) {
      cudaStreamEndCapture(s.get(), &graph);
      if (graph) cudaGraphDestroy(graph);
      graph = nullptr;
      throw;
    }
    cuda::check(cudaStreamEndCapture(s.get(), &graph), "cudaStreamEndCapture");
    cuda::check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    cuda::check(cudaGraphLaunch(exec, s.get()), "cudaGraphLaunch (warm-up)");
    s.synchronize("graph warm-up");
    t.graph = true;
  } catch (const std::exception& e) {
    t.capture_error = e.what();
    (void)cudaGetLastError();
    if (exec) cudaGraphExecDestroy(exec);
    exec = nullptr;
  }
  std::vector<double> per_op;
  for (int r = 0; r < o.reps; ++r) {
    e0.record(s);
    if (t.graph) {
      cuda::check(cudaGraphLaunch(exec, s.get()), "cudaGraphLaunch");
    } else {
      for (int i = 0; i < ops; ++i) enqueue(i % copies);
    }
    e1.record(s);
    e1.synchronize();
    per_op.push_back(1e3 * cuda::Event::elapsed_ms(e0, e1) / ops);
  }
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  cuda::device_synchronize("timed operations");
  std::sort(per_op.begin(), per_op.end());
  t.us = per_op[per_op.size() / 2];
  t.spread = (per_op.back() - per_op.front()) / t.us;
  return t;
}

// ---- formatting ----------------------------------------------------------------------------

inline double gb_per_s(double bytes, double us) { return us > 0 ? bytes / us * 1e-3 : 0; }
inline double tflops(double flops, double us) { return us > 0 ? flops / us * 1e-6 : 0; }

}  // namespace fp4kit::bench
