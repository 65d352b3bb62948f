#pragma once
// Row gathers, weighted scatter-adds, sums, scaling and the non-finite check that the forward pass
// runs between its kernels and products. F32, device pointers, asynchronous on `stream`. Plain C++
// header.
#include <cstdint>

#include "cuda/runtime.h"
#include "formats/dtype.h"

namespace fp4kit::cuda {

// dst[i] = src[rows[i]] for n rows of width w.
void gather_rows(const float* src, const int32_t* rows, int64_t n, int64_t w, float* dst, StreamHandle stream);
// dst[rows[i]] += src[i] · weights[i] for n rows of width w (rows distinct).
void scatter_add_rows(float* dst, const float* src, const int32_t* rows, const float* weights, int64_t n, int64_t w,
                      StreamHandle stream);
// dst[t, j, :] = src[t, :] for j < times: each of n rows of width w written `times` times in a row
// (the embedding into every hyper-connection stream).
void repeat_rows(const float* src, int64_t n, int64_t w, int64_t times, float* dst, StreamHandle stream);
// out = a + b for n values.
void add_f32(const float* a, const float* b, int64_t n, float* out, StreamHandle stream);

// out = src widened to F32 for n values of F32, BF16 or F16 (exact); InputError for other dtypes.
void widen_to_f32(const void* src, DType dtype, int64_t n, float* out, StreamHandle stream);
// dst[i] = src[rows[i]] widened to F32, for n rows of width w of an F32, BF16 or F16 matrix (exact):
// a few rows of a large stored table (the embedding) without decoding all of it.
void gather_rows_widened(const void* src, DType dtype, const int32_t* rows, int64_t n, int64_t w, float* dst,
                         StreamHandle stream);
// The amax a calibration observer takes from a linear input x [rows, cols]: out[0] = max |x| and
// out[1] = max over rows of |w_r · max |x_r|| (= out[0] without weights), NaN when any value is NaN,
// as AmaxObserver computes them on the CPU (the maxima are exact). out: device [2]; scratch: device
// [rows] floats.
void linear_amax(const float* x, int64_t rows, int64_t cols, const float* row_weights, float* out, float* scratch,
                 StreamHandle stream);
// The index of the first non-finite value of x[0, n) into *first (device; it must hold n or more
// before the call, and keeps its value when every value is finite).
void first_nonfinite(const float* x, int64_t n, int64_t* first, StreamHandle stream);

}  // namespace fp4kit::cuda
