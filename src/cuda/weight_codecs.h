#pragma once
// Weight codecs on the GPU, byte-identical with the scalar references of src/formats/
// (nvfp4_ref, mxfp4_ref, mxfp4_cast_ref, fp8_block_ref). Plain C++ header: device pointers in and
// out, no CUDA headers. Every launcher checks its arguments (sizes, null pointers, alignment) and
// throws InputError naming the kernel and the shape; CUDA failures are DeviceError. Kernels are
// asynchronous on `stream`.
//
// Alignment: device buffers from cudaMalloc are aligned; a pointer into one must be offset by whole
// 16-element (NVFP4) or 32-element (MXFP4) blocks, which keeps the 16-byte vector loads aligned.
#include <cstddef>
#include <cstdint>

#include "cuda/runtime.h"
#include "formats/dtype.h"
#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "formats/mxfp4_cast.h"
#include "formats/nvfp4.h"

namespace fp4kit::cuda {

// ---- NVFP4 quantization (nvfp4_ref) ---------------------------------------------------------

// max |x| over n elements of `dtype` (F32, BF16 or F16) at `src`, stored as an f32 at `amax` (device
// memory): NaN (0x7FC00000) when any element is NaN, as nvfp4_ref::amax. With `accumulate` the
// result is folded into the value already at *amax (a previous call's), so a tensor can be reduced
// piece by piece. n = 0 stores 0 (or leaves an accumulated value as it is).
void nvfp4_amax(const void* src, DType dtype, size_t n, float* amax, StreamHandle stream, bool accumulate = false);

// nvfp4_ref::quantize of n elements (a multiple of 16) of `dtype` (F32, BF16 or F16): packed n/2
// bytes (even index in the low nibble) and n/16 E4M3 block scales, with any of the three numerics
// (`scaling` as nvfp4_scaling() makes it on the host).
void nvfp4_quantize(const void* src, DType dtype, size_t n, const Nvfp4Scaling& scaling, uint8_t* packed,
                    uint8_t* scales, StreamHandle stream);

// nvfp4_ref::dequantize of n elements (a multiple of 16): packed n/2 bytes (8-byte aligned) and n/16
// E4M3 bytes in, n f32 values out (16-byte aligned), bit for bit as the CPU.
void nvfp4_dequantize_f32(const uint8_t* packed, const uint8_t* scales, size_t n, const Nvfp4Scaling& scaling, float* out,
                          StreamHandle stream);

// The block values of an NVFP4 weight, E2M1 × E4M3 without the global scale, as BF16: exact (a
// product of 2 and 4 significant bits, 2^-10 .. 2688), so a BF16 product with the global scale as its
// alpha computes what the weight GEMMs compute. n elements (a multiple of 16); NaN scale bytes give
// NaN; code 0x8 gives +0.0 (ModelOpt). Out 16-byte aligned.
void nvfp4_block_values_bf16(const uint8_t* packed, const uint8_t* scales, size_t n, uint16_t* out, StreamHandle stream);

// ---- MXFP4 (mxfp4_ref) ----------------------------------------------------------------------

// n elements (a multiple of 32): packed n/2 bytes and n/32 E8M0 bytes in, n values out.
void mxfp4_dequantize_f32(const uint8_t* packed, const uint8_t* scales, size_t n, float* out, StreamHandle stream);
void mxfp4_dequantize_bf16(const uint8_t* packed, const uint8_t* scales, size_t n, uint16_t* out,
                           StreamHandle stream);

// The lossless MXFP4 -> NVFP4 cast (mxfp4_cast_ref::cast) of n elements (a multiple of 32) with the
// tensor's constants (mxfp4_cast_params() on the host): NVFP4 packed n/2 bytes and E4M3 scales n/16
// bytes out. `counters` (device memory, may be null) is kMxfp4CastCounters uint64 values in the
// order of Mxfp4CastStats' fields; the kernel adds this call's counts to them, so the caller zeroes
// them once per tensor and may cut the tensor into pieces.
inline constexpr size_t kMxfp4CastCounters = 4;
void mxfp4_to_nvfp4(const uint8_t* packed, const uint8_t* scales, size_t n, const Mxfp4CastParams& params,
                    uint8_t* out_packed, uint8_t* out_scales, uint64_t* counters, StreamHandle stream);

// The cast's lookup table for one tensor's constants (every E8M0 byte x largest magnitude: the E4M3
// scale, the output code of each source code, the inexact codes; 32 KiB), computed on the device by
// a setup kernel on `stream`. The call above builds one per call; a caller that casts a tensor in
// pieces, or many tensors with the same constants, builds it once and passes it instead.
class Mxfp4CastDeviceTable {
 public:
  Mxfp4CastDeviceTable(const Mxfp4CastParams& params, StreamHandle stream);
  const Mxfp4CastParams& params() const { return params_; }
  const void* data() const { return table_.data(); }

 private:
  Mxfp4CastParams params_;
  DeviceBuffer table_;
};
// The same cast with a table built beforehand (its work on its stream must be ordered before this
// call's, e.g. the same stream).
void mxfp4_to_nvfp4(const uint8_t* packed, const uint8_t* scales, size_t n, const Mxfp4CastDeviceTable& table,
                    uint8_t* out_packed, uint8_t* out_scales, uint64_t* counters, StreamHandle stream);
// The counters copied back to the host, as the CPU's stats.
Mxfp4CastStats mxfp4_cast_stats(const uint64_t (&counters)[kMxfp4CastCounters]);

// ---- FP8 with 128x128 block scales (fp8_block_ref) -----------------------------------------

// Rows [row_begin, row_end) of the E4M3 weight [shape.rows, shape.cols] (`weight` is the whole
// tensor, `scales` its [scale_rows, scale_cols] E8M0 bytes or F32 values as shape.scale_kind says),
// dequantized to `out`, which points at the first output row. Ragged edge blocks are fine.
void fp8_block_dequantize_f32(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape,
                              size_t row_begin, size_t row_end, float* out, StreamHandle stream);
void fp8_block_dequantize_bf16(const uint8_t* weight, const void* scales, const Fp8BlockShape& shape,
                               size_t row_begin, size_t row_end, uint16_t* out, StreamHandle stream);

}  // namespace fp4kit::cuda
