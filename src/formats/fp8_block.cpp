#include "formats/fp8_block.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "formats/bf16.h"
#include "formats/e2m1.h"
#include "formats/e4m3.h"
#include "formats/e8m0.h"
#include "formats/mxfp4.h"

namespace fp4kit {

float fp8_block_ref::load_block_scale(const void* scales, const Fp8BlockShape& shape, size_t br, size_t bc) {
  const size_t idx = br * shape.scale_cols() + bc;
  if (shape.scale_kind == Fp8ScaleKind::E8M0) return E8M0{static_cast<const uint8_t*>(scales)[idx]}.to_float();
  float s;
  std::memcpy(&s, static_cast<const uint8_t*>(scales) + 4 * idx, 4);
  return s;
}

namespace {

template <typename Store>
void dequantize_rows(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape,
                     size_t row_begin, size_t row_end, Store store) {
  for (size_t r = row_begin; r < row_end; ++r) {
    for (size_t c = 0; c < shape.cols; ++c) {
      const float s = fp8_block_ref::load_block_scale(scales, shape, r / kFp8BlockSize, c / kFp8BlockSize);
      store((r - row_begin) * shape.cols + c, E4M3{weight[r * shape.cols + c]}.to_float() * s);
    }
  }
}

int ceil_log2(float v) {
  int e;
  const float m = std::frexp(v, &e);
  return m == 0.5f ? e - 1 : e;
}

}  // namespace

namespace fp8_block_ref {

void dequantize_f32(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape,
                    size_t row_begin, size_t row_end, float* out) {
  dequantize_rows(weight, scales, shape, row_begin, row_end, [out](size_t i, float v) { out[i] = v; });
}

void dequantize_bf16(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape,
                     size_t row_begin, size_t row_end, uint16_t* out) {
  dequantize_rows(weight, scales, shape, row_begin, row_end,
                  [out](size_t i, float v) { out[i] = BF16::from_float(v).bits; });
}

float block_amax(FloatSpan src, const Fp8BlockShape& shape, size_t br, size_t bc) {
  const size_t r0 = br * kFp8BlockSize, r1 = std::min(shape.rows, r0 + kFp8BlockSize);
  const size_t c0 = bc * kFp8BlockSize, c1 = std::min(shape.cols, c0 + kFp8BlockSize);
  float amax = 0.0f;
  for (size_t r = r0; r < r1; ++r)
    for (size_t c = c0; c < c1; ++c) {
      const float a = std::fabs(src.at(r * shape.cols + c));
      amax = a > amax ? a : amax;  // NaN never wins
    }
  return amax;
}

float store_block_scale(float amax, const Fp8BlockShape& shape, void* scales, size_t br, size_t bc) {
  amax = amax > 1e-4f ? amax : 1e-4f;
  const size_t idx = br * shape.scale_cols() + bc;
  if (shape.scale_kind == Fp8ScaleKind::E8M0) {
    const E8M0 e = E8M0::from_exponent(std::isinf(amax) ? 128 : ceil_log2(amax / E4M3::kMax));
    static_cast<uint8_t*>(scales)[idx] = e.bits;
    return e.to_float();
  }
  const float s = std::fmin(amax, std::numeric_limits<float>::max()) / E4M3::kMax;
  std::memcpy(static_cast<uint8_t*>(scales) + 4 * idx, &s, 4);
  return s;
}

void quantize(FloatSpan src, const Fp8BlockShape& shape, uint8_t* weight, void* scales) {
  for (size_t br = 0; br < shape.scale_rows(); ++br) {
    for (size_t bc = 0; bc < shape.scale_cols(); ++bc) {
      const float s = store_block_scale(block_amax(src, shape, br, bc), shape, scales, br, bc);
      const size_t r0 = br * kFp8BlockSize, r1 = std::min(shape.rows, r0 + kFp8BlockSize);
      const size_t c0 = bc * kFp8BlockSize, c1 = std::min(shape.cols, c0 + kFp8BlockSize);
      for (size_t r = r0; r < r1; ++r)
        for (size_t c = c0; c < c1; ++c)
          weight[r * shape.cols + c] = E4M3::from_float_saturate(src.at(r * shape.cols + c) / s).bits;
    }
  }
}

}  // namespace fp8_block_ref

const Fp8BlockKernels& fp8_block_kernels(Isa isa) {
  static const Fp8BlockKernels scalar = {fp8_block_ref::dequantize_f32, fp8_block_ref::dequantize_bf16,
                                        fp8_block_ref::quantize};
  if (const Fp8BlockKernels* k = fp8_block_simd::kernels(isa)) return *k;
  return scalar;
}

void mxfp4_to_fp8_block(const uint8_t* packed, const uint8_t* mx_scales, size_t rows, size_t cols,
                        uint8_t* weight, uint8_t* e8m0_scales) {
  const size_t mx_cols = cols / kMxfp4BlockSize;
  const size_t scale_cols = fp8_scale_dim(cols);
  for (size_t br = 0; br < fp8_scale_dim(rows); ++br) {
    for (size_t bc = 0; bc < scale_cols; ++bc) {
      const size_t r0 = br * kFp8BlockSize, r1 = std::min(rows, r0 + kFp8BlockSize);
      const size_t g0 = bc * kFp8BlockSize / kMxfp4BlockSize;
      const size_t g1 = std::min(mx_cols, (bc + 1) * kFp8BlockSize / kMxfp4BlockSize);
      float max_scale = 0.0f;
      for (size_t r = r0; r < r1; ++r)
        for (size_t g = g0; g < g1; ++g) max_scale = std::fmax(max_scale, E8M0{mx_scales[r * mx_cols + g]}.to_float());
      const float sb = max_scale / 64.0f;
      int byte = ceil_log2(sb) + E8M0::kBias;  // sb is a power of two: this is log2(sb)+127
      byte = byte < 0 ? 0 : (byte > 254 ? 254 : byte);
      e8m0_scales[br * scale_cols + bc] = static_cast<uint8_t>(byte);
      for (size_t r = r0; r < r1; ++r) {
        for (size_t g = g0; g < g1; ++g) {
          const float s = E8M0{mx_scales[r * mx_cols + g]}.to_float();
          for (size_t j = 0; j < kMxfp4BlockSize; ++j) {
            const size_t c = g * kMxfp4BlockSize + j;
            const size_t i = r * cols + c;
            const uint8_t code = unpack_e2m1(packed[i / 2], static_cast<unsigned>(i)).bits;
            weight[i] = E4M3::from_float(E2M1::kDeepSeekValues[code] * s / sb).bits;
          }
        }
      }
    }
  }
}

}  // namespace fp4kit
