// weight_gemm() and grouped_weight_gemm(): argument checks and the choice of path.
//  - decode path: a dense product with M <= kDecodeRows, or a grouped one whose non-empty groups
//    average at most kDecodeRows rows. Dense FP4 and FP8-block products with K a multiple of 128
//    take the register-streaming kernel (launch_weight_gemm_fp4_decode), and so do grouped FP4
//    products whose groups average at most 8 rows (a decode step's routed experts); everything
//    else launch_weight_gemm_decode.
//    Both split K themselves where needed (within a cluster, sums added in a fixed order:
//    deterministic).
//  - prefill path (launch_weight_gemm_prefill): everything else.
// batched_weight_gemm(): strided batches of dense products, on the register-streaming kernel only.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "base/error.h"
#include "cuda/check.cuh"
#include "cuda/weight_gemm.h"
#include "cuda/weight_gemm_kernels.cuh"

namespace fp4kit::cuda {
namespace {

const char* format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::Nvfp4: return "nvfp4";
    case WeightFormat::Mxfp4: return "mxfp4";
    case WeightFormat::Fp8Block: return "fp8 block";
    case WeightFormat::Bf16: return "bf16";
  }
  return "unknown";
}

int64_t k_multiple(WeightFormat f) { return f == WeightFormat::Mxfp4 ? 32 : 16; }

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
bool aligned2(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 1u) == 0; }

// `shape` returns the shape's text, made only for an error (these run before every launch).
template <class Shape>
[[noreturn]] void bad(const char* kernel, const Shape& shape, const std::string& why) {
  throw InputError(std::string(kernel) + " [" + shape() + "]: " + why);
}

// Checks shared by both entry points: the shape and the format.
template <class Shape>
void check_shape(const char* kernel, const Shape& shape, WeightFormat format, int64_t n, int64_t k) {
  if (static_cast<int>(format) > static_cast<int>(WeightFormat::Bf16)) bad(kernel, shape, "unknown weight format");
  if (n <= 0 || k <= 0) bad(kernel, shape, "N and K must be positive");
  if (k % k_multiple(format) != 0)
    bad(kernel, shape, std::string("K must be a multiple of ") + std::to_string(k_multiple(format)) + " for " +
                           format_name(format) + " weights");
  // Grid limits: N / 128 blocks along y, and 32-bit k arithmetic stays far away.
  if (n > int64_t{65535} * 64 || k > (int64_t{1} << 30)) bad(kernel, shape, "N or K too large");
}
// A dense product of m rows: x [m, k] and y [m, n] dense.
WeightGemmArgs dense_args(const uint16_t* x, int64_t m, const GemmWeight& w, void* y, GemmOutput out) {
  WeightGemmArgs a;
  a.x = x;
  a.rows = m;
  a.n = w.n;
  a.k = w.k;
  a.weight = w;
  a.y = y;
  a.y_bf16 = out == GemmOutput::Bf16;
  a.ldx = w.k;
  a.ldy = w.n;
  return a;
}
}  // namespace

void weight_gemm(const uint16_t* x, int64_t m, const GemmWeight& w, void* y, GemmOutput out, StreamHandle stream) {
  const char* kernel = "weight_gemm";
  const auto shape = [&] {
    return std::string(format_name(w.format)) + " M=" + std::to_string(m) + " N=" + std::to_string(w.n) +
           " K=" + std::to_string(w.k);
  };
  if (m < 0) bad(kernel, shape, "M must not be negative");
  check_shape(kernel, shape, w.format, w.n, w.k);
  if (m == 0) return;
  if (!x || !y || !w.data) bad(kernel, shape, "null x, y or weight data");
  if (w.format != WeightFormat::Bf16 && !w.scales) bad(kernel, shape, "null weight scales");
  if (!aligned16(x) || !aligned16(w.data)) bad(kernel, shape, "x and the weight data must be 16-byte aligned");
  if (m > (int64_t{1} << 31)) bad(kernel, shape, "M too large");

  const WeightGemmArgs a = dense_args(x, m, w, y, out);

  if (m > kDecodeRows) {
    launch_weight_gemm_prefill(a, w.format, false, (m + kPrefillRows - 1) / kPrefillRows, stream);
    return;
  }
  if (fp4_decode_applies(a, w.format) && aligned2(w.scales)) {
    launch_weight_gemm_fp4_decode(a, w.format, stream);
    return;
  }
  launch_weight_gemm_decode(a, w.format, false, 1, stream);
}

bool weight_gemm_swiglu_takes(const GemmWeight& gate, const GemmWeight& up, int64_t m) {
  const WeightFormat f = gate.format;
  const bool format = f == WeightFormat::Nvfp4 || f == WeightFormat::Mxfp4 || f == WeightFormat::Fp8Block;
  const auto scales_aligned = [&](const GemmWeight& w) {
    return reinterpret_cast<uintptr_t>(w.scales) % (f == WeightFormat::Fp8Block && w.fp8_scales_f32 ? 4 : 2) == 0;
  };
  return format && up.format == f && up.n == gate.n && up.k == gate.k && gate.fp8_scales_f32 == up.fp8_scales_f32 &&
         m >= 1 && m <= 8 && gate.n > 0 && gate.k > 0 && gate.k % 128 == 0 && gate.k / 128 <= (int64_t{1} << 20) &&
         gate.data && up.data && gate.scales && up.scales && aligned16(gate.data) && aligned16(up.data) &&
         scales_aligned(gate) && scales_aligned(up);
}

void weight_gemm_swiglu(const uint16_t* x, int64_t m, const GemmWeight& gate, const GemmWeight& up, float limit, void* y,
                        GemmOutput out, StreamHandle stream) {
  const char* kernel = "weight_gemm_swiglu";
  const auto shape = [&] {
    return std::string(format_name(gate.format)) + " M=" + std::to_string(m) + " N=" + std::to_string(gate.n) +
           " K=" + std::to_string(gate.k);
  };
  check_shape(kernel, shape, gate.format, gate.n, gate.k);
  if (!weight_gemm_swiglu_takes(gate, up, m))
    bad(kernel, shape, "not what the fused decode path takes (gate and up of one FP4/FP8-block format and shape, "
                       "M 1..8, K % 128 == 0, aligned codes and scales)");
  if (!x || !y) bad(kernel, shape, "null x or y");
  if (!aligned16(x)) bad(kernel, shape, "x must be 16-byte aligned");
  WeightGemmArgs a = dense_args(x, m, gate, y, out);
  a.up_weight = up;
  a.swiglu_limit = limit;
  launch_weight_gemm_fp4_decode_swiglu(a, gate.format, stream);
}

bool batched_weight_gemm_takes(WeightFormat format, int64_t m, int64_t n, int64_t k) {
  const bool fp4 = format == WeightFormat::Nvfp4 || format == WeightFormat::Mxfp4;
  return (fp4 || format == WeightFormat::Fp8Block) && m >= 1 && m <= kDecodeRows && n > 0 && k > 0 && k % 128 == 0 &&
         (fp4 || n % 128 == 0);
}

void batched_weight_gemm(const BatchedGemm& b, StreamHandle stream) {
  const char* kernel = "batched_weight_gemm";
  const auto shape = [&] {
    return std::string(format_name(b.w.format)) + " M=" + std::to_string(b.m) + " N=" + std::to_string(b.n) +
           " K=" + std::to_string(b.w.k) + " batch=" + std::to_string(b.batch);
  };
  check_shape(kernel, shape, b.w.format, b.w.n, b.w.k);
  if (b.batch < 1 || b.batch > 65535) bad(kernel, shape, "batch must be in [1, 65535]");
  if (b.n * b.batch != b.w.n) bad(kernel, shape, "the weight has " + std::to_string(b.w.n) + " rows, not batch x N");
  if (!batched_weight_gemm_takes(b.w.format, b.m, b.n, b.w.k))
    bad(kernel, shape, "not a shape the batched decode path takes (NVFP4/MXFP4/FP8 blocks, M 1..16, K % 128 == 0, "
                       "N % 128 == 0 for FP8 blocks)");
  if (!b.x || !b.y || !b.w.data || !b.w.scales) bad(kernel, shape, "null x, y, weight data or scales");
  if (!aligned16(b.x) || !aligned16(b.w.data) || !aligned2(b.w.scales) || b.ldx % 8 != 0 || b.x_batch_stride % 8 != 0)
    bad(kernel, shape, "x, its row and batch strides and the weight data must be 16-byte aligned, the scales 2-byte");
  if (b.ldx < b.w.k || b.ldy < b.n || b.x_batch_stride < 0 || b.y_batch_stride < 0)
    bad(kernel, shape, "row strides shorter than a row, or negative batch strides");
  WeightGemmArgs a;
  a.x = b.x;
  a.rows = b.m;
  a.n = b.n;
  a.k = b.w.k;
  a.weight = b.w;
  a.y = b.y;
  a.y_bf16 = b.out == GemmOutput::Bf16;
  a.ldx = b.ldx;
  a.ldy = b.ldy;
  a.x_batch_stride = b.x_batch_stride;
  a.y_batch_stride = b.y_batch_stride;
  a.batch = static_cast<int32_t>(b.batch);
  if (!fp4_decode_applies(a, b.w.format)) bad(kernel, shape, "FP8 F32 block scales must be 4-byte aligned");
  launch_weight_gemm_fp4_decode(a, b.w.format, stream);
}

DeviceBuffer upload_weight_descriptors(const std::vector<GemmWeight>& w, const std::string& what) {
  DeviceBuffer b(w.size() * sizeof(GemmWeight), what);
  if (const StreamHandle s = b.stream_order()) {
    // Stream-ordered memory may be what that stream freed while its queued kernels still use it; a
    // plain cudaMemcpy (the legacy stream, not ordered with a non-blocking one) could land before
    // them. From pageable memory the call returns once the bytes are staged.
    check(cudaMemcpyAsync(b.data(), w.data(), b.bytes(), cudaMemcpyHostToDevice, s), [&] { return "copy of the " + what; });
  } else {
    // From pageable memory cudaMemcpy may return before its DMA lands: the legacy stream waited for,
    // so that a kernel on another stream cannot read the descriptors first.
    check(cudaMemcpy(b.data(), w.data(), b.bytes(), cudaMemcpyHostToDevice), [&] { return "copy of the " + what; });
    check(cudaStreamSynchronize(nullptr), [&] { return "copy of the " + what; });
  }
  return b;
}

bool weight_set_gemm_takes(const std::vector<GemmWeight>& weights, int64_t m) {
  if (weights.size() < 2 || weights.size() > static_cast<size_t>(kMaxWeightSet) || m < 1 || m > kMaxWeightSetRows)
    return false;
  const GemmWeight& first = weights.front();
  const WeightFormat f = first.format;
  if (f != WeightFormat::Nvfp4 && f != WeightFormat::Mxfp4 && f != WeightFormat::Fp8Block) return false;
  for (const GemmWeight& w : weights) {
    const size_t scale_align = f == WeightFormat::Fp8Block && w.fp8_scales_f32 ? 4 : 2;
    if (w.format != f || w.k != first.k || w.n <= 0 || w.n > int64_t{65535} * 64 || !w.data || !w.scales ||
        !aligned16(w.data) || reinterpret_cast<uintptr_t>(w.scales) % scale_align != 0)
      return false;
  }
  return first.k > 0 && first.k % 128 == 0 && first.k / 128 <= (int64_t{1} << 20);
}

WeightSet::WeightSet(const std::vector<GemmWeight>& weights) : host_(weights) {
  if (!weight_set_gemm_takes(weights, 1))
    throw InputError("weight set of " + std::to_string(weights.size()) +
                     " weights: not what the set path takes (2.." + std::to_string(kMaxWeightSet) +
                     " weights of one FP4/FP8-block format and one K, a multiple of 128; aligned codes and scales)");
  device_ = upload_weight_descriptors(weights, "weight set descriptors");
}

void weight_set_gemm(const uint16_t* x, int64_t m, const WeightSet& set, void* const* y, GemmOutput out,
                     StreamHandle stream) {
  const char* kernel = "weight_set_gemm";
  const GemmWeight& first = set.weight(0);
  const auto shape = [&] {
    return std::string(format_name(first.format)) + " M=" + std::to_string(m) + " K=" + std::to_string(first.k) +
           " products=" + std::to_string(set.size());
  };
  if (m < 1 || m > kMaxWeightSetRows) bad(kernel, shape, "M must be in [1, " + std::to_string(kMaxWeightSetRows) + "]");
  if (!x || !aligned16(x)) bad(kernel, shape, "x must be a 16-byte aligned device pointer");
  WeightGemmArgs a;
  a.x = x;
  a.rows = m;
  a.k = first.k;
  a.weight = first;
  a.weight.read_early = true;
  for (size_t p = 0; p < set.size(); ++p) {
    if (!y || !y[p]) bad(kernel, shape, "null output of product " + std::to_string(p));
    a.set_y[p] = y[p];
    a.n = std::max(a.n, set.weight(p).n);
    a.weight.read_early = a.weight.read_early && set.weight(p).read_early;
  }
  a.set = set.device();
  a.y = y[0];
  a.y_bf16 = out == GemmOutput::Bf16;
  a.ldx = first.k;
  a.ldy = a.n;
  launch_weight_gemm_fp4_decode_set(a, first.format, static_cast<int64_t>(set.size()), stream);
}

void grouped_weight_gemm(const GroupedGemm& g, StreamHandle stream) {
  const char* kernel = "grouped_weight_gemm";
  const auto shape = [&] {
    return std::string(format_name(g.format)) + " rows=" + std::to_string(g.rows) +
           " groups=" + std::to_string(g.groups) + " N=" + std::to_string(g.n) + " K=" + std::to_string(g.k) +
           (g.up ? " swiglu" : "");
  };
  if (g.rows < 0 || g.groups < 0) bad(kernel, shape, "rows and groups must not be negative");
  check_shape(kernel, shape, g.format, g.n, g.k);
  if (g.rows == 0) return;
  if (g.groups == 0) bad(kernel, shape, "rows without groups");
  if (!g.x || !g.y || !g.offsets || !g.weights) bad(kernel, shape, "null x, y, offsets or weights");
  if (!aligned16(g.x)) bad(kernel, shape, "x must be 16-byte aligned");
  if (g.rows > (int64_t{1} << 31)) bad(kernel, shape, "rows too large");

  WeightGemmArgs a;
  a.x = g.x;
  a.rows = g.rows;
  a.n = g.n;
  a.k = g.k;
  a.offsets = g.offsets;
  a.groups = g.groups;
  a.weight.format = g.format;
  a.gates = g.weights;
  a.ups = g.up;
  a.swiglu_limit = g.swiglu_limit;
  a.y = g.y;
  a.y_bf16 = g.out == GemmOutput::Bf16;
  const bool swiglu = g.up != nullptr;

  a.ldx = g.k;
  a.ldy = g.n;

  const int64_t busy_groups = std::min<int64_t>(g.groups, g.rows);  // at most this many are non-empty
  if (g.rows <= kDecodeRows * busy_groups) {
    if (busy_groups > 65535) bad(kernel, shape, "too many groups for the decode grid");
    if (fp4_grouped_decode_applies(g.format, g.rows, busy_groups, g.k)) {
      // Σ_g ceil(r_g / 8) over the non-empty groups is at most busy_groups + rows / 8.
      const int64_t tiles = busy_groups + g.rows / kGroupTileRows;
      if (tiles > 65535) bad(kernel, shape, "too many group tiles for the decode grid");
      launch_weight_gemm_fp4_grouped_decode(a, g.format, swiglu, tiles, stream);
      return;
    }
    launch_weight_gemm_decode(a, g.format, swiglu, busy_groups, stream);
  } else {
    const int64_t row_tiles = (g.rows + kPrefillRows - 1) / kPrefillRows + g.groups;
    launch_weight_gemm_prefill(a, g.format, swiglu, row_tiles, stream);
  }
}

}  // namespace fp4kit::cuda
