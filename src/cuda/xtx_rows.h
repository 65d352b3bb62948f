#pragma once
// The rows of one linear input in device memory, as the XᵀX sums read them (cuda/xtx_blocks.h,
// cuda/xtx_full.h): x[r][c] is f32[r·stride + c] or bf16[r·stride + c] (exactly one is set),
// c < cols; with row_weights, row r is multiplied by row_weights[r] (in F64, as the CPU's
// calib/xtx_table.h does) before it is squared. Plain C++ header.
#include <cstdint>
#include <string>

#include "base/error.h"

namespace fp4kit::cuda {

struct XtxRows {
  const float* f32 = nullptr;
  const uint16_t* bf16 = nullptr;
  int64_t rows = 0, cols = 0, stride = 0;
  const float* row_weights = nullptr;
};

// "rows=R cols=K stride=S f32|bf16[ weighted]", for error messages.
inline std::string xtx_rows_shape(const XtxRows& x) {
  return "rows=" + std::to_string(x.rows) + " cols=" + std::to_string(x.cols) + " stride=" + std::to_string(x.stride) +
         (x.bf16 ? " bf16" : " f32") + (x.row_weights ? " weighted" : "");
}

// Error naming `what` and the shape unless the rows are well formed: rows >= 0, 0 < cols <= stride,
// exactly one data pointer (none needed for zero rows).
inline void check_xtx_rows(const XtxRows& x, const char* what) {
  const bool one_pointer = (x.f32 != nullptr) != (x.bf16 != nullptr);
  if (x.rows < 0 || x.cols <= 0 || x.stride < x.cols || (x.rows > 0 && !one_pointer))
    throw Error(std::string(what) + " [" + xtx_rows_shape(x) + "]: malformed rows (need rows >= 0, 0 < cols <= stride, " +
                "and exactly one of F32 or BF16 data)");
}

}  // namespace fp4kit::cuda
