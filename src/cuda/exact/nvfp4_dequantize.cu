// NVFP4 dequantization (nvfp4_ref::dequantize): E2M1 value times the block's multiplier, which is
// f32(E4M3 scale) times (ModelOpt) or divided by (compressed-tensors) the global scale, each an f32
// operation with the CPU's NaN bits. compressed-tensors decodes code 0x8 as -0.0, ModelOpt as +0.0.
// One thread per 16-element block: 8 packed bytes in, four 16-byte vectors out. Also the block
// values alone (no global scale) as BF16, for products that apply the global scale as alpha.
#include "cuda/codecs.cuh"
#include "cuda/exact/host_nan.cuh"
#include "cuda/exact/launch.cuh"
#include "cuda/weight_codecs.h"

namespace fp4kit::cuda {

namespace {

constexpr int kNvfp4Threads = 256;

__global__ void nvfp4_dequantize_kernel(const uint2* packed, const uint8_t* scales, size_t blocks, bool compressed_tensors,
                                        float global, uint32_t default_nan, float4* out) {
  for (size_t b = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; b < blocks;
       b += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float s = e4m3_to_float(scales[b]);
    const float m = compressed_tensors ? host_div(s, global, default_nan) : host_mul(s, global, default_nan);
    const uint2 q = packed[b];
    float v[16];
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const uint32_t word = j < 8 ? q.x : q.y;
      const uint32_t code = (word >> (4 * (j % 8))) & 0xFu;
      float e = e2m1_to_float(code);
      if (compressed_tensors && code == 0x8u) e = -0.0f;
      v[j] = host_mul(e, m, default_nan);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) out[b * 4 + i] = make_float4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]);
  }
}

// One thread per 16-element block: E2M1 × E4M3 in F32 (exact), then to BF16 (exact as well).
__global__ void nvfp4_block_values_bf16_kernel(const uint2* packed, const uint8_t* scales, size_t blocks, uint4* out) {
  for (size_t b = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; b < blocks;
       b += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float s = e4m3_to_float(scales[b]);
    const uint2 q = packed[b];
    uint32_t pairs[8];
#pragma unroll
    for (int j = 0; j < 16; j += 2) {
      const uint32_t word = j < 8 ? q.x : q.y;
      const uint32_t lo = (word >> (4 * (j % 8))) & 0xFu, hi = (word >> (4 * (j % 8) + 4)) & 0xFu;
      pairs[j / 2] = float_to_bf16_bits(e2m1_to_float(lo) * s) | static_cast<uint32_t>(float_to_bf16_bits(e2m1_to_float(hi) * s)) << 16;
    }
    out[b * 2] = make_uint4(pairs[0], pairs[1], pairs[2], pairs[3]);
    out[b * 2 + 1] = make_uint4(pairs[4], pairs[5], pairs[6], pairs[7]);
  }
}

// The launchers' argument checks: false (nothing to launch) for n = 0, InputError for bad arguments.
bool check_decode_arguments(const char* kernel, const std::string& shape, const uint8_t* packed, const uint8_t* scales,
                            size_t n, const void* out) {
  if (n % kNvfp4BlockSize != 0) throw_bad_argument(kernel, shape, "n must be a multiple of 16");
  if (n == 0) return false;
  require_pointer(packed, "packed", kernel, shape);
  require_pointer(scales, "scales", kernel, shape);
  require_pointer(out, "out", kernel, shape);
  require_aligned(packed, 8, "packed", kernel, shape);
  require_aligned(out, 16, "out", kernel, shape);
  return true;
}

}  // namespace

void nvfp4_block_values_bf16(const uint8_t* packed, const uint8_t* scales, size_t n, uint16_t* out, StreamHandle stream) {
  const char* kernel = "nvfp4_block_values_bf16";
  const std::string shape = "n=" + std::to_string(n);
  if (!check_decode_arguments(kernel, shape, packed, scales, n, out)) return;
  const size_t blocks = n / kNvfp4BlockSize;
  nvfp4_block_values_bf16_kernel<<<grid_blocks(blocks, kNvfp4Threads), kNvfp4Threads, 0, stream>>>(
      reinterpret_cast<const uint2*>(packed), scales, blocks, reinterpret_cast<uint4*>(out));
  check_launch(kernel, shape);
}

void nvfp4_dequantize_f32(const uint8_t* packed, const uint8_t* scales, size_t n, const Nvfp4Scaling& scaling, float* out,
                          StreamHandle stream) {
  const char* kernel = "nvfp4_dequantize_f32";
  const std::string shape = "n=" + std::to_string(n);
  if (!check_decode_arguments(kernel, shape, packed, scales, n, out)) return;
  const size_t blocks = n / kNvfp4BlockSize;
  nvfp4_dequantize_kernel<<<grid_blocks(blocks, kNvfp4Threads), kNvfp4Threads, 0, stream>>>(
      reinterpret_cast<const uint2*>(packed), scales, blocks, scaling.numerics == Nvfp4Numerics::CompressedTensors,
      scaling.global, host_default_nan(), reinterpret_cast<float4*>(out));
  check_launch(kernel, shape);
}

}  // namespace fp4kit::cuda
