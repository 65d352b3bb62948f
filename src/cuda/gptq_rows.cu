// GptqDevice's rows: the weight in processing order, per batch the column kernel and the lazy update
// as a cuBLAS SGEMM, then the codes packed in column order (see gptq.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/error.h"
#include "cuda/check.cuh"
#include "cuda/codecs.cuh"
#include "cuda/cublas_library.h"
#include "cuda/elementwise.h"
#include "cuda/exact/encoders.cuh"
#include "cuda/gptq_device.cuh"

namespace fp4kit::cuda {

namespace {

constexpr unsigned kFullMask = 0xFFFFFFFFu;
constexpr int kRowThreads = 256;    // gather: one block per row
constexpr int kBatchWarps = 16;     // column kernel: one warp per row, 16 rows per block
constexpr size_t kPassValues = size_t{1} << 26;  // rows per pass: W of at most 256 MB in F32

// w[row][i] = values[row][order[i]] (processing order); row_ok[row] = every value finite.
__global__ void gather_kernel(const float* values, const int32_t* order, int k, float* w, int32_t* row_ok) {
  const int64_t row = blockIdx.x;
  const float* src = values + row * k;
  float* dst = w + row * k;
  int bad = 0;
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    const float v = src[order[i]];
    dst[i] = v;
    bad |= !isfinite(v);
  }
  bad = __syncthreads_or(bad);
  if (threadIdx.x == 0) row_ok[row] = !bad;
}

struct BatchArgs {
  float* w;               // [rows, k] processing order
  const float* u;         // [k, k] column-major
  const int32_t* order;   // [k]
  const uint8_t* scales;  // [rows, k/16]
  const float* tables;    // divisor[256], multiplier[256]
  float* err;             // [rows, ld_err]
  uint8_t* codes;         // [rows, k] processing order
  int32_t* row_ok;        // [rows]
  int64_t rows;
  int k, i1, b, ld_err;
};

// Columns [i1, i1 + b) of each row, b <= 32·kSlots: one warp per row, lane l holding the batch's
// columns l, l + 32, ... in registers. For each column t in order, every lane takes w_t from its
// owner and computes the same code and error e = (w_t − ŵ_t) / U_tt; the owner keeps them; the
// lanes holding later columns j of the batch do w_j −= e·U_tj. A non-finite e ends the row
// (row_ok 0: plain rounding), as on the CPU. The batch's block of U sits in shared memory (row
// stride b + 1, so filling it by columns does not conflict on banks).
template <int kSlots>
__global__ void __launch_bounds__(kBatchWarps * 32) batch_kernel(BatchArgs a) {
  extern __shared__ float shared[];
  const int b = a.b, stride = b + 1;
  float* us = shared;                        // [b, b + 1]
  float* divisor = us + b * stride;          // [256]
  float* multiplier = divisor + 256;         // [256]
  int32_t* column = reinterpret_cast<int32_t*>(multiplier + 256);  // [b]
  for (int n = threadIdx.x; n < b * b; n += blockDim.x) {
    const int ii = n % b, jj = n / b;
    us[ii * stride + jj] = a.u[static_cast<int64_t>(a.i1 + ii) + static_cast<int64_t>(a.i1 + jj) * a.k];
  }
  for (int n = threadIdx.x; n < 512; n += blockDim.x) divisor[n] = a.tables[n];  // both tables
  for (int n = threadIdx.x; n < b; n += blockDim.x) column[n] = a.order[a.i1 + n];
  __syncthreads();

  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kBatchWarps + (threadIdx.x >> 5);
  if (row >= a.rows) return;
  float* err = a.err + row * a.ld_err;
  if (!a.row_ok[row]) {
    for (int j = lane; j < b; j += 32) err[j] = 0.0f;
    return;
  }
  float* w = a.w + row * a.k + a.i1;
  const uint8_t* scales = a.scales + row * (a.k / 16);
  float x[kSlots], e_own[kSlots];
  uint32_t scale_own[kSlots], code_own[kSlots];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int j = s * 32 + lane;
    x[s] = j < b ? w[j] : 0.0f;
    scale_own[s] = j < b ? scales[column[j] >> 4] : 0u;
    e_own[s] = 0.0f;
    code_own[s] = 0u;
  }
  bool failed = false;
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    for (int l = 0; l < 32; ++l) {
      const int t = s * 32 + l;
      if (t >= b) break;
      const float wt = __shfl_sync(kFullMask, x[s], l);
      const uint32_t sb = __shfl_sync(kFullMask, scale_own[s], l);
      // The CPU's rule: E2M1 of w / divisor in f32 (round half to even), decoded times the multiplier.
      const uint32_t q = float_to_e2m1(__fdiv_rn(wt, divisor[sb]));
      const float rounded = __fmul_rn(e2m1_to_float(q), multiplier[sb]);
      const float* ut = us + t * stride;
      const float e = __fdiv_rn(__fsub_rn(wt, rounded), ut[t]);
      if (!isfinite(e)) {  // the same value on every lane: the warp leaves together
        failed = true;
        break;
      }
      if (lane == l) {
        code_own[s] = q;
        e_own[s] = e;
      }
#pragma unroll
      for (int s2 = s; s2 < kSlots; ++s2) {
        const int j = s2 * 32 + lane;
        if (j > t && j < b) x[s2] = fmaf(-e, ut[j], x[s2]);
      }
    }
    if (failed) break;
  }
  if (failed) {
    if (lane == 0) a.row_ok[row] = 0;
    for (int j = lane; j < b; j += 32) err[j] = 0.0f;
    return;
  }
  uint8_t* codes = a.codes + row * a.k + a.i1;
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int j = s * 32 + lane;
    if (j < b) {
      err[j] = e_own[s];
      codes[j] = static_cast<uint8_t>(code_own[s]);
    }
  }
}

// packed[row][c/2] from the codes in processing order (position[c]: the step of column c), or for a
// row left to plain rounding from its values: E2M1 of x / divisor, the CPU's round_row.
__global__ void pack_kernel(const uint8_t* codes, const float* values, const int32_t* position, const uint8_t* scales,
                            const float* tables, const int32_t* row_ok, int64_t rows, int k, uint8_t* packed) {
  const int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int half = k / 2;
  if (n >= rows * half) return;
  const int64_t row = n / half;
  const int c = static_cast<int>(n % half) * 2;
  uint32_t q[2];
  for (int h = 0; h < 2; ++h) {
    if (row_ok[row]) {
      q[h] = codes[row * k + position[c + h]];
    } else {
      const uint32_t sb = scales[row * (k / 16) + (c + h) / 16];
      q[h] = float_to_e2m1(__fdiv_rn(values[row * k + c + h], tables[sb]));
    }
  }
  packed[n] = static_cast<uint8_t>((q[0] & 0xFu) | ((q[1] & 0xFu) << 4));
}

template <int kSlots>
void launch_batch(const BatchArgs& a, StreamHandle stream) {
  const size_t smem = (static_cast<size_t>(a.b) * (a.b + 1) + 512) * sizeof(float) + static_cast<size_t>(a.b) * 4;
  static const cudaError_t attribute = cudaFuncSetAttribute(
      batch_kernel<kSlots>, cudaFuncAttributeMaxDynamicSharedMemorySize,
      static_cast<int>((kGptqDeviceMaxBatch * (kGptqDeviceMaxBatch + 1) + 512) * sizeof(float) + kGptqDeviceMaxBatch * 4));
  check(attribute, "cudaFuncSetAttribute (gptq batch kernel shared memory)");
  batch_kernel<kSlots><<<ceil_div(static_cast<size_t>(a.rows), kBatchWarps), kBatchWarps * 32, smem, stream>>>(a);
  check_launch("gptq batch", [&] { return "rows=" + std::to_string(a.rows) + " k=" + std::to_string(a.k) + " columns " +
                                 std::to_string(a.i1) + "+" + std::to_string(a.b); });
}

}  // namespace

GptqRowStats GptqDevice::quantize_rows(FloatSpan src, size_t k, const uint8_t* scales, const GptqScaleTables& tables,
                                       size_t block, uint8_t* packed) {
  Impl& d = *impl_;
  const std::string what = "GPTQ rows [" + std::to_string(k ? src.size / k : 0) + ", " + std::to_string(k) + "]";
  if (!d.factored || d.k != k) throw InputError(what + ": no factor of this size on the device");
  if (k % 16 != 0 || src.size % k != 0) throw InputError(what + ": k must be a multiple of 16 dividing the values");
  if (block == 0 || block % 16 != 0) throw InputError(what + ": the block must be a positive multiple of 16");
  if (src.dtype != DType::F32 && src.dtype != DType::BF16 && src.dtype != DType::F16)
    throw InputError(what + ": the values must be F32, BF16 or F16");
  GptqRowStats stats;
  const size_t rows = src.size / k;
  if (rows == 0) return stats;
  const size_t batch = std::min(block, kGptqDeviceMaxBatch);
  const size_t pass_rows = std::max<size_t>(1, std::min(rows, kPassValues / k));
  const size_t width = dtype_bits(src.dtype) / 8;
  reserve(d.raw, pass_rows * k * width, what + " source");
  reserve(d.values, pass_rows * k * sizeof(float), what + " values");
  reserve(d.w, pass_rows * k * sizeof(float), what + " working values");
  reserve(d.err, pass_rows * batch * sizeof(float), what + " batch errors");
  reserve(d.codes, pass_rows * k, what + " codes");
  reserve(d.packed, pass_rows * k / 2, what + " packed");
  reserve(d.scales, pass_rows * k / 16, what + " scales");
  reserve(d.row_ok, pass_rows * sizeof(int32_t), what + " row flags");
  reserve(d.tables, sizeof tables, what + " scale tables");
  copy_to_device(d.tables.data(), &tables, sizeof tables, d.stream);
  std::vector<int32_t> ok(pass_rows);
  const int n = static_cast<int>(k);
  const float minus_one = -1.0f, one = 1.0f;
  for (size_t p0 = 0; p0 < rows; p0 += pass_rows) {
    const size_t pr = std::min(pass_rows, rows - p0);
    const std::string pass = "rows " + std::to_string(p0) + "+" + std::to_string(pr) + " k=" + std::to_string(k);
    copy_to_device(d.raw.data(), src.subspan(p0 * k, pr * k).data, pr * k * width, d.stream);
    copy_to_device(d.scales.data(), scales + p0 * k / 16, pr * k / 16, d.stream);
    widen_to_f32(d.raw.data(), src.dtype, static_cast<int64_t>(pr * k), d.values.data<float>(), d.stream.get());
    gather_kernel<<<static_cast<unsigned>(pr), kRowThreads, 0, d.stream.get()>>>(
        d.values.data<float>(), d.order.data<int32_t>(), n, d.w.data<float>(), d.row_ok.data<int32_t>());
    check_launch("gptq gather", pass);
    for (size_t i1 = 0; i1 < k; i1 += batch) {
      const size_t i2 = std::min(i1 + batch, k);
      const BatchArgs args{d.w.data<float>(),      d.a.data<float>(),      d.order.data<int32_t>(),
                           d.scales.data<uint8_t>(), d.tables.data<float>(), d.err.data<float>(),
                           d.codes.data<uint8_t>(), d.row_ok.data<int32_t>(), static_cast<int64_t>(pr),
                           n,                       static_cast<int>(i1),   static_cast<int>(i2 - i1),
                           static_cast<int>(batch)};
      if (i2 - i1 <= 32) launch_batch<1>(args, d.stream.get());
      else if (i2 - i1 <= 64) launch_batch<2>(args, d.stream.get());
      else launch_batch<4>(args, d.stream.get());
      if (i2 == k) break;
      // W[:, i2:] −= E·U[i1:i2, i2:]; column-major: Wᵀ[i2:, :] −= (U[i1:i2, i2:])ᵀ·Eᵀ, where the block
      // of U is the column-major b × (k − i2) matrix at U + i1 + i2·k (leading dimension k).
      check_cublas(cublas().Sgemm(d.blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(k - i2), static_cast<int>(pr),
                                  static_cast<int>(i2 - i1), &minus_one, d.a.data<float>() + i1 + i2 * k, n,
                                  d.err.data<float>(), static_cast<int>(batch), &one, d.w.data<float>() + i2, n),
                   "cublasSgemm (GPTQ batch update)",
                   pass + " columns " + std::to_string(i1) + "+" + std::to_string(i2 - i1));
    }
    pack_kernel<<<ceil_div(pr * k / 2, 256), 256, 0, d.stream.get()>>>(
        d.codes.data<uint8_t>(), d.values.data<float>(), d.position.data<int32_t>(), d.scales.data<uint8_t>(),
        d.tables.data<float>(), d.row_ok.data<int32_t>(), static_cast<int64_t>(pr), n, d.packed.data<uint8_t>());
    check_launch("gptq pack", pass);
    copy_to_host(packed + p0 * k / 2, d.packed.data(), pr * k / 2, d.stream);
    copy_to_host(ok.data(), d.row_ok.data(), pr * sizeof(int32_t), d.stream);
    d.stream.synchronize(("GPTQ " + pass).c_str());
    for (size_t r = 0; r < pr; ++r) (ok[r] ? stats.rows : stats.skipped_rows) += 1;
  }
  return stats;
}

}  // namespace fp4kit::cuda
