#pragma once
// What the two halves of GptqDevice (gptq_factor.cu: the factor; gptq_rows.cu: the rows) share.
#include <cublas_v2.h>
#include <cusolverDn.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda/gptq.h"
#include "cuda/runtime.h"

namespace fp4kit::cuda {

struct GptqDevice::Impl {
  Stream stream;
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;

  // The matrix (set_matrix) and its factor.
  size_t k = 0;
  DeviceBuffer h;         // F64 [k, k]: H as given (row-major)
  DeviceBuffer order;     // int32 [k]: the column processed at each step
  DeviceBuffer position;  // int32 [k]: the step of each column (order's inverse)
  DeviceBuffer a;         // F32 [k, k] column-major: J·A·J, then its factor L, then U (factor())
  DeviceBuffer inverse;   // F32 [k, k] column-major: L⁻¹
  DeviceBuffer work;      // potrf's workspace
  int work_floats = 0;
  DeviceBuffer status;    // int32 potrf info, then int64 index of the first non-finite value of U
  bool factored = false;

  // The rows (quantize_rows), grown as needed.
  DeviceBuffer raw, values, w, err, codes, packed, scales, row_ok, tables;

  Impl();
  ~Impl();
};

// `buffer` holding at least `bytes` (its contents are not kept when it grows).
inline void reserve(DeviceBuffer& buffer, size_t bytes, const std::string& what) {
  if (buffer.bytes() < bytes) {
    buffer = DeviceBuffer();
    buffer = DeviceBuffer(bytes, what);
  }
}

}  // namespace fp4kit::cuda
