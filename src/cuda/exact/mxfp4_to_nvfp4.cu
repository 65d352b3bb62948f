// The lossless MXFP4 -> NVFP4 cast (mxfp4_cast_ref::cast). Every output of a 32-element group is
// a function of its E8M0 byte and, outside the exponent window, of its largest E2M1 magnitude. A
// setup kernel evaluates the exporter's arithmetic once for each of the 256 x 8 (byte, magnitude)
// pairs: the E4M3 block scale, the output code of each of the 16 source codes, and which source codes
// do not decode to the same value afterwards. The cast kernel then transcodes one group per thread
// (16 packed bytes in, 16 out) by table lookup and counts the groups for Mxfp4CastStats.
#include "cuda/codecs.cuh"
#include "cuda/exact/encoders.cuh"
#include "cuda/exact/host_nan.cuh"
#include "cuda/exact/launch.cuh"
#include "cuda/exact/nvfp4_scaling.cuh"
#include "cuda/weight_codecs.h"

namespace fp4kit::cuda {

namespace {

constexpr int kCastThreads = 256;
constexpr unsigned kTableEntries = 256 * 8;

struct CastConstants {
  float weight_scale_2;
  float denom;  // 6*weight_scale_2 as the host computes it
  int k_own;
  int k_max_shared;
  uint32_t default_nan;
};

// The exporter's window: block scales 2^(k-m) with k in [k_own-17, k_own] are exact.
__device__ __forceinline__ bool window_holds(int k, int k_own) {
  const int delta = k - (k_own - 8);
  return delta >= -9 && delta <= 8;
}

// Entry (byte, magnitude) = {output codes of source codes 0..7 as nibbles, of 8..15,
// scale byte | inexact source codes << 16, 0}.
__global__ void mxfp4_cast_table_kernel(CastConstants p, uint4* __restrict__ table) {
  const unsigned e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= kTableEntries) return;
  const uint32_t byte = e >> 3, magnitude = e & 7u;
  const int k = static_cast<int>(byte) - 127;
  // ldexp(1, k): 2^-127 for byte 0, +Inf for byte 255 (where the E8M0 decode is NaN).
  const float pow2k = byte == 255 ? __uint_as_float(0x7F800000u) : byte == 0 ? __uint_as_float(0x00400000u)
                                                                              : __uint_as_float(byte << 23);
  const float source_scale = e8m0_to_float(byte);
  const float amax = window_holds(k, p.k_own) ? host_mul(6.0f, pow2k, p.default_nan)
                                              : host_mul(e2m1_to_float(magnitude), pow2k, p.default_nan);
  const uint32_t scale = modelopt_block_scale(amax, p.denom, false, p.default_nan);
  const float divisor = __fmul_rn(e4m3_to_float(scale), p.weight_scale_2);  // also the dequant multiplier
  uint32_t codes[2] = {0, 0}, inexact = 0;
#pragma unroll
  for (uint32_t c = 0; c < 16; ++c) {
    // ModelOpt's MXFP4 dequant in BF16 (code 0x8 as -0.0), requantized with the block scale.
    const float decoded = c == 8 ? -0.0f : e2m1_to_float(c);
    const float value = bf16_bits_to_float(float_to_bf16_bits(__fmul_rn(decoded, pow2k)));
    const uint32_t code = float_to_e2m1(__fdiv_rn(value, divisor));
    codes[c / 8] |= code << (4 * (c % 8));
    if (!(__fmul_rn(e2m1_to_float(c), source_scale) == __fmul_rn(e2m1_to_float(code), divisor))) inexact |= 1u << c;
  }
  table[e] = make_uint4(codes[0], codes[1], scale | (inexact << 16), 0);
}

// The largest E2M1 magnitude (code & 7) among the 32 nibbles.
__device__ __forceinline__ uint32_t largest_magnitude(const uint32_t (&w)[4]) {
  uint32_t m = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) m = __vmaxu4(m, __vmaxu4(w[i] & 0x07070707u, (w[i] >> 4) & 0x07070707u));
  return max(max(m & 0xFFu, (m >> 8) & 0xFFu), max((m >> 16) & 0xFFu, m >> 24));
}

// Whether any of the 32 nibbles equals `code` (a zero nibble of w ^ code*0x11111111).
__device__ __forceinline__ bool holds_code(const uint32_t (&w)[4], uint32_t code) {
  const uint32_t pattern = code * 0x11111111u;
  bool found = false;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t x = w[i] ^ pattern;
    found = found || (((x - 0x11111111u) & ~x & 0x88888888u) != 0);
  }
  return found;
}

__device__ __forceinline__ uint32_t transcode(uint32_t word, uint64_t codes) {
  uint32_t out = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const uint32_t c = (word >> (4 * i)) & 0xFu;
    out |= static_cast<uint32_t>((codes >> (4 * c)) & 0xFu) << (4 * i);
  }
  return out;
}

__global__ void __launch_bounds__(kCastThreads) mxfp4_to_nvfp4_kernel(const uint4* __restrict__ packed,
                                                                  const uint8_t* __restrict__ scales, size_t groups,
                                                                  const uint4* __restrict__ table, int k_own,
                                                                  int k_max_shared, uint4* __restrict__ out_packed,
                                                                  uint16_t* __restrict__ out_scales,
                                                                  unsigned long long* __restrict__ counters) {
  uint32_t counted = 0, zero_scale = 0, reported = 0, exact = 0;
  const size_t stride = static_cast<size_t>(gridDim.x) * kCastThreads;
  for (size_t g = static_cast<size_t>(blockIdx.x) * kCastThreads + threadIdx.x; g < groups; g += stride) {
    const uint4 in = __ldcs(packed + g);
    const uint32_t w[4] = {in.x, in.y, in.z, in.w};
    const uint32_t byte = scales[g];
    const int k = static_cast<int>(byte) - 127;
    const uint32_t magnitude = window_holds(k, k_own) ? 0u : largest_magnitude(w);
    const uint4 entry = __ldg(table + byte * 8 + magnitude);
    const uint64_t codes = entry.x | (static_cast<uint64_t>(entry.y) << 32);
    __stcs(out_packed + g, make_uint4(transcode(w[0], codes), transcode(w[1], codes), transcode(w[2], codes),
                                      transcode(w[3], codes)));
    const uint32_t scale = entry.z & 0xFFu;
    out_scales[g] = static_cast<uint16_t>(scale | (scale << 8));  // both 16-element blocks
    bool group_exact = true;
    for (uint32_t m = entry.z >> 16; m != 0 && group_exact; m &= m - 1) group_exact = !holds_code(w, __ffs(m) - 1);
    ++counted;
    zero_scale += byte == 0;
    reported += byte == 0 || k >= k_max_shared - 17;
    exact += group_exact;
  }
  if (!counters) return;  // the same for every thread of the block
  // Warp sums, then block sums in shared memory, then one global add per counter and block: adds to
  // one address serialize, and ~8 K warps adding each cost more than a small tensor's cast.
  __shared__ uint32_t block_sums[4];
  if (threadIdx.x < 4) block_sums[threadIdx.x] = 0;
  __syncthreads();
  const uint32_t sums[4] = {__reduce_add_sync(0xFFFFFFFFu, counted), __reduce_add_sync(0xFFFFFFFFu, zero_scale),
                            __reduce_add_sync(0xFFFFFFFFu, reported), __reduce_add_sync(0xFFFFFFFFu, exact)};
  if ((threadIdx.x & 31) == 0)
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (sums[i]) atomicAdd(block_sums + i, sums[i]);
  __syncthreads();
  if (threadIdx.x < 4 && block_sums[threadIdx.x] != 0)
    atomicAdd(counters + threadIdx.x, static_cast<unsigned long long>(block_sums[threadIdx.x]));
}

}  // namespace

namespace {

std::string cast_shape(size_t n, const Mxfp4CastParams& params) {
  return "n=" + std::to_string(n) + " k_own=" + std::to_string(params.k_own) +
         " k_max_shared=" + std::to_string(params.k_max_shared);
}

// Argument checks of both entry points; false when there is nothing to do (n = 0).
bool check_cast_arguments(const uint8_t* packed, const uint8_t* scales, size_t n, uint8_t* out_packed,
                          uint8_t* out_scales, uint64_t* counters, const char* kernel, const std::string& shape) {
  if (n % kMxfp4BlockSize != 0) throw_bad_argument(kernel, shape, "n must be a multiple of 32");
  if (n == 0) return false;
  require_pointer(packed, "packed", kernel, shape);
  require_pointer(scales, "scales", kernel, shape);
  require_pointer(out_packed, "out_packed", kernel, shape);
  require_pointer(out_scales, "out_scales", kernel, shape);
  require_aligned(packed, 16, "packed", kernel, shape);
  require_aligned(out_packed, 16, "out_packed", kernel, shape);
  require_aligned(out_scales, 2, "out_scales", kernel, shape);
  if (counters) require_aligned(counters, 8, "counters", kernel, shape);
  return true;
}

void launch_table(const Mxfp4CastParams& params, uint4* table, StreamHandle stream) {
  const CastConstants constants{params.weight_scale_2, 6.0f * params.weight_scale_2, params.k_own,
                                params.k_max_shared, host_default_nan()};
  mxfp4_cast_table_kernel<<<kTableEntries / 256, 256, 0, stream>>>(constants, table);
}

void launch_cast(const uint8_t* packed, const uint8_t* scales, size_t n, const Mxfp4CastParams& params,
                 const uint4* table, uint8_t* out_packed, uint8_t* out_scales, uint64_t* counters,
                 StreamHandle stream) {
  static_assert(sizeof(uint64_t) == sizeof(unsigned long long));
  const size_t groups = n / kMxfp4BlockSize;
  const unsigned blocks = grid_blocks(groups, kCastThreads);
  mxfp4_to_nvfp4_kernel<<<blocks, kCastThreads, 0, stream>>>(
      reinterpret_cast<const uint4*>(packed), scales, groups, table, params.k_own, params.k_max_shared,
      reinterpret_cast<uint4*>(out_packed), reinterpret_cast<uint16_t*>(out_scales),
      reinterpret_cast<unsigned long long*>(counters));
}

}  // namespace

void mxfp4_to_nvfp4(const uint8_t* packed, const uint8_t* scales, size_t n, const Mxfp4CastParams& params,
                    uint8_t* out_packed, uint8_t* out_scales, uint64_t* counters, StreamHandle stream) {
  constexpr const char* kKernel = "mxfp4_to_nvfp4";
  const std::string shape = cast_shape(n, params);
  if (!check_cast_arguments(packed, scales, n, out_packed, out_scales, counters, kKernel, shape)) return;
  uint4* table = nullptr;
  check(cudaMallocAsync(reinterpret_cast<void**>(&table), kTableEntries * sizeof(uint4), stream),
        std::string(kKernel) + " [" + shape + "]: table allocation");
  launch_table(params, table, stream);
  launch_cast(packed, scales, n, params, table, out_packed, out_scales, counters, stream);
  // Released in stream order whether or not the launches went through; a launch error is sticky
  // in cudaGetLastError, which check_launch reads.
  const cudaError_t released = cudaFreeAsync(table, stream);
  check_launch(kKernel, shape);
  check(released, std::string(kKernel) + " [" + shape + "]: table release");
}

Mxfp4CastDeviceTable::Mxfp4CastDeviceTable(const Mxfp4CastParams& params, StreamHandle stream)
    : params_(params), table_(kTableEntries * sizeof(uint4), "mxfp4 cast table") {
  launch_table(params_, table_.data<uint4>(), stream);
  check_launch("mxfp4_cast_table", [&] { return cast_shape(0, params_); });
}

void mxfp4_to_nvfp4(const uint8_t* packed, const uint8_t* scales, size_t n, const Mxfp4CastDeviceTable& table,
                    uint8_t* out_packed, uint8_t* out_scales, uint64_t* counters, StreamHandle stream) {
  constexpr const char* kKernel = "mxfp4_to_nvfp4";
  const std::string shape = cast_shape(n, table.params());
  if (!check_cast_arguments(packed, scales, n, out_packed, out_scales, counters, kKernel, shape)) return;
  require_pointer(table.data(), "table", kKernel, shape);
  launch_cast(packed, scales, n, table.params(), static_cast<const uint4*>(table.data()), out_packed, out_scales,
              counters, stream);
  check_launch(kKernel, shape);
}

Mxfp4CastStats mxfp4_cast_stats(const uint64_t (&counters)[kMxfp4CastCounters]) {
  Mxfp4CastStats s;
  s.groups = counters[0];
  s.zero_scale_groups = counters[1];
  s.reported_lossless = counters[2];
  s.exact_groups = counters[3];
  return s;
}

}  // namespace fp4kit::cuda
