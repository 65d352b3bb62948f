// FP8 E4M3 with 128x128 block scales, dequantized as fp8_block_ref does: f32(e4m3) * S[r/128][c/128]
// in f32, or that rounded to BF16. The grid is 2-D (column vectors x rows), so no thread divides by
// the row length. When each row is a whole number of vectors and the pointers allow it, a thread
// reads 4 (f32 out) or 8 (bf16 out) weight bytes and writes one 16-byte vector, which never crosses a
// 128-column block; other shapes (ragged rows) take one element per thread.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "cuda/codecs.cuh"
#include "cuda/exact/host_nan.cuh"
#include "cuda/exact/launch.cuh"
#include "cuda/weight_codecs.h"

namespace fp4kit::cuda {

namespace {

constexpr int kRowsPerThread = 4;  // independent loads in flight per thread

template <Fp8ScaleKind S>
__device__ __forceinline__ float load_scale(const void* scales, size_t index) {
  if constexpr (S == Fp8ScaleKind::E8M0) return e8m0_to_float(static_cast<const uint8_t*>(scales)[index]);
  return static_cast<const float*>(scales)[index];
}

// An E8M0 scale 2^k with k in [-117, 119]: its product with any E4M3 value (2^-9..448, 4 significant
// bits) is an exact f32 normal, so exact in BF16 as well.
__device__ __forceinline__ bool exact_product_scale(float scale) { return (__float_as_uint(scale) >> 23) - 10u <= 236u; }

// Whether a byte of x or y is 0x7F or 0xFF (E4M3 NaN): only those carry into bit 7 when 1 is added to
// their low 7 bits.
__device__ __forceinline__ bool has_nan_byte(uint32_t x, uint32_t y) {
  return ((((x & 0x7F7F7F7Fu) + 0x01010101u) | ((y & 0x7F7F7F7Fu) + 0x01010101u)) & 0x80808080u) != 0;
}

// Eight E4M3 bytes (no NaN) times an exact_product_scale() scale -> eight BF16 values: the hardware
// E4M3 -> F16 conversion (exact), F16 -> F32 (exact), the product (exact), its high half.
__device__ __forceinline__ uint4 convert_exact_product(uint2 in, float scale) {
  const uint32_t b[2] = {in.x, in.y};
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const auto bytes = static_cast<__nv_fp8x2_storage_t>((b[i / 2] >> (16 * (i % 2))) & 0xFFFFu);
    const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(bytes, __NV_E4M3)));
    w[i] = __byte_perm(__float_as_uint(__fmul_rn(f.x, scale)), __float_as_uint(__fmul_rn(f.y, scale)), 0x7632u);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// `kWidth` output elements from `kWidth` weight bytes (little endian in `bytes`).
template <Fp8ScaleKind S, class Out, int kWidth>
struct Fp8Vector {
  using In = std::conditional_t<kWidth == 1, uint8_t, std::conditional_t<kWidth == 4, uint32_t, uint2>>;
  using Store = std::conditional_t<kWidth == 1, Out, uint4>;

  // The f32 product's NaN bits as the CPU makes them (a NaN weight byte, a NaN or Inf scale). When
  // both operands are NaN, x86 returns the NaN of the product's destination register, and the
  // compiled fp8_block_ref loop (GCC 12 and 13, -O3) allocates them differently per scale kind: the
  // F32 loop multiplies into the weight's register (the weight's NaN wins), the E8M0 loop into the
  // scale's (the scale's NaN 0x7FC00000 wins).
  __device__ __forceinline__ static float value(uint32_t byte, float scale, uint32_t default_nan) {
    if constexpr (S == Fp8ScaleKind::E8M0) return host_mul(scale, e4m3_to_float(byte), default_nan);
    else return host_mul(e4m3_to_float(byte), scale, default_nan);
  }
  __device__ __forceinline__ static Store convert(In in, float scale, uint32_t default_nan) {
    if constexpr (kWidth == 1) {
      const float v = value(in, scale, default_nan);
      if constexpr (sizeof(Out) == 4) return v;
      else return float_to_bf16_bits(v);
    } else if constexpr (kWidth == 4) {  // f32 out
      uint32_t w[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) w[i] = __float_as_uint(value((in >> (8 * i)) & 0xFFu, scale, default_nan));
      return make_uint4(w[0], w[1], w[2], w[3]);
    } else {  // bf16 out
      if constexpr (S == Fp8ScaleKind::E8M0)
        if (exact_product_scale(scale) && !has_nan_byte(in.x, in.y)) return convert_exact_product(in, scale);
      const uint32_t b[2] = {in.x, in.y};
      uint32_t w[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t src = b[i / 2] >> (16 * (i % 2));
        w[i] = float_to_bf16_bits(__fmul_rn(e4m3_to_float(src & 0xFFu), scale)) |
               (static_cast<uint32_t>(float_to_bf16_bits(__fmul_rn(e4m3_to_float((src >> 8) & 0xFFu), scale))) << 16);
      }
      return make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
};

// Rows [row_begin, row_begin + rows) of a [*, cols] weight; `out` is the first output row.
template <Fp8ScaleKind S, class Out, int kWidth>
__global__ void fp8_block_dequantize_kernel(const uint8_t* __restrict__ weight, const void* __restrict__ scales,
                                            size_t cols, size_t scale_cols, size_t row_begin, size_t rows,
                                            Out* __restrict__ out, uint32_t default_nan) {
  using V = Fp8Vector<S, Out, kWidth>;
  const size_t vectors_per_row = cols / kWidth;
  const size_t x_stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t r0 = static_cast<size_t>(blockIdx.y) * kRowsPerThread; r0 < rows;
       r0 += static_cast<size_t>(gridDim.y) * kRowsPerThread) {
    for (size_t cv = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; cv < vectors_per_row; cv += x_stride) {
      const size_t col = cv * kWidth;  // a vector lies inside one 128-column block
      typename V::In in[kRowsPerThread];
      float scale[kRowsPerThread];
#pragma unroll
      for (int u = 0; u < kRowsPerThread; ++u) {
        const size_t r = r0 + u;
        if (r < rows) {
          const size_t row = row_begin + r;
          in[u] = __ldcs(reinterpret_cast<const typename V::In*>(weight + row * cols) + cv);
          scale[u] = load_scale<S>(scales, (row / kFp8BlockSize) * scale_cols + col / kFp8BlockSize);
        }
      }
#pragma unroll
      for (int u = 0; u < kRowsPerThread; ++u) {
        const size_t r = r0 + u;
        if (r < rows)
          __stcs(reinterpret_cast<typename V::Store*>(out + r * cols) + cv, V::convert(in[u], scale[u], default_nan));
      }
    }
  }
}

template <Fp8ScaleKind S, class Out, int kWidth>
void launch_width(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape, size_t row_begin,
                  size_t rows, Out* out, StreamHandle stream) {
  const size_t vectors_per_row = shape.cols / kWidth;
  const unsigned threads = vectors_per_row >= 128 ? 128 : vectors_per_row > 32 ? 64 : 32;
  const unsigned grid_x = static_cast<unsigned>(std::min<size_t>((vectors_per_row + threads - 1) / threads, 1024));
  const size_t row_steps = (rows + kRowsPerThread - 1) / kRowsPerThread;
  // About 2048 resident threads per SM over all (x, y); rows capped by the grid's y limit.
  const unsigned target = sm_count() * (2048 / threads);
  const unsigned grid_y = static_cast<unsigned>(
      std::max<size_t>(1, std::min<size_t>({row_steps, 65535, (target + grid_x - 1) / grid_x})));
  fp8_block_dequantize_kernel<S, Out, kWidth><<<dim3(grid_x, grid_y), threads, 0, stream>>>(
      weight, scales, shape.cols, shape.scale_cols(), row_begin, rows, out, host_default_nan());
}

template <class Out>
void launch(const char* kernel, const uint8_t* weight, const void* scales, const Fp8BlockShape& shape,
            size_t row_begin, size_t row_end, Out* out, StreamHandle stream) {
  const std::string shape_text = "rows=" + std::to_string(shape.rows) + " cols=" + std::to_string(shape.cols) +
                                 " rows " + std::to_string(row_begin) + ".." + std::to_string(row_end) + " " +
                                 (shape.scale_kind == Fp8ScaleKind::E8M0 ? "E8M0" : "F32") + " scales";
  if (row_begin > row_end || row_end > shape.rows)
    throw_bad_argument(kernel, shape_text, "the row range is not inside the weight");
  if (row_begin == row_end || shape.cols == 0) return;
  require_pointer(weight, "weight", kernel, shape_text);
  require_pointer(scales, "scales", kernel, shape_text);
  require_pointer(out, "out", kernel, shape_text);
  if (shape.scale_kind == Fp8ScaleKind::F32) require_aligned(scales, 4, "scales", kernel, shape_text);
  require_aligned(out, sizeof(Out), "out", kernel, shape_text);
  const size_t rows = row_end - row_begin;
  constexpr int kWidth = 16 / sizeof(Out);
  const bool vector = shape.cols % kWidth == 0 && is_aligned(weight, kWidth) && is_aligned(out, 16);
  auto run = [&]<Fp8ScaleKind S>() {
    if (vector) launch_width<S, Out, kWidth>(weight, scales, shape, row_begin, rows, out, stream);
    else launch_width<S, Out, 1>(weight, scales, shape, row_begin, rows, out, stream);
  };
  if (shape.scale_kind == Fp8ScaleKind::E8M0) run.template operator()<Fp8ScaleKind::E8M0>();
  else run.template operator()<Fp8ScaleKind::F32>();
  check_launch(kernel, shape_text);
}

}  // namespace

void fp8_block_dequantize_f32(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape,
                              size_t row_begin, size_t row_end, float* out, StreamHandle stream) {
  launch("fp8_block_dequantize_f32", weight, scales, shape, row_begin, row_end, out, stream);
}

void fp8_block_dequantize_bf16(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape,
                               size_t row_begin, size_t row_end, uint16_t* out, StreamHandle stream) {
  launch("fp8_block_dequantize_bf16", weight, scales, shape, row_begin, row_end, out, stream);
}

}  // namespace fp4kit::cuda
