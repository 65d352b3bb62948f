#pragma once
// 16 bytes of dense floating-point source (F32, BF16 or F16) decoded to f32, exactly as
// FloatSpan::at does. The source type is a template parameter so each kernel is compiled per dtype.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/codecs.cuh"
#include "cuda/exact/encoders.cuh"
#include "formats/dtype.h"

namespace fp4kit::cuda {

enum class SourceKind : uint8_t { F32, BF16, F16 };

template <SourceKind K>
struct FloatChunk {
  static constexpr int kElements = K == SourceKind::F32 ? 4 : 8;  // per 16 bytes
  static constexpr int kBytes = K == SourceKind::F32 ? 4 : 2;      // per element

  __device__ __forceinline__ static void decode(const uint4& v, float (&x)[kElements]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    if constexpr (K == SourceKind::F32) {
#pragma unroll
      for (int i = 0; i < 4; ++i) x[i] = __uint_as_float(w[i]);
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) {  // little endian: the even element in the low half
        if constexpr (K == SourceKind::BF16) {
          x[2 * i] = __uint_as_float(w[i] << 16);
          x[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
        } else {
          x[2 * i] = f16_bits_to_float(static_cast<uint16_t>(w[i] & 0xFFFFu));
          x[2 * i + 1] = f16_bits_to_float(static_cast<uint16_t>(w[i] >> 16));
        }
      }
    }
  }

  // One element at a byte address (tails that do not fill 16 bytes).
  __device__ __forceinline__ static float load_one(const uint8_t* p) {
    if constexpr (K == SourceKind::F32) return __uint_as_float(*reinterpret_cast<const uint32_t*>(p));
    const uint16_t b = *reinterpret_cast<const uint16_t*>(p);
    if constexpr (K == SourceKind::BF16) return bf16_bits_to_float(b);
    return f16_bits_to_float(b);
  }
};

// max(|x|) as an order-independent integer max: for |x| (sign cleared) the f32 bits order like the
// values, and every NaN is first mapped to 0x7FC00000, which is above +Inf. So the max of these keys
// is nvfp4_ref::amax's result: the largest |x|, or its quiet NaN when any element is NaN.
__device__ __forceinline__ uint32_t amax_key(float x) {
  const uint32_t a = __float_as_uint(x) & 0x7FFFFFFFu;
  return a > 0x7F800000u ? 0x7FC00000u : a;
}

// Host side: calls launch.template operator()<K>() with the SourceKind of `d` (BF16, F16, else F32),
// so a launcher writes its launch once for the three kernels.
template <class Launch>
void with_source_kind(DType d, Launch&& launch) {
  if (d == DType::BF16) launch.template operator()<SourceKind::BF16>();
  else if (d == DType::F16) launch.template operator()<SourceKind::F16>();
  else launch.template operator()<SourceKind::F32>();
}

}  // namespace fp4kit::cuda
