#pragma once
// The rows a pass on the GPU shows an observer (engine::DeviceLinearInput) as the XᵀX sums on the
// device read them (cuda/xtx_rows.h): contiguous rows, the routing weights when `weighted`.
#include "cuda/xtx_rows.h"
#include "engine/observer.h"

namespace fp4kit {

inline cuda::XtxRows xtx_rows_of(const engine::DeviceLinearInput& in, bool weighted) {
  cuda::XtxRows rows;
  rows.f32 = in.x, rows.bf16 = in.x_bf16;
  rows.rows = in.rows, rows.cols = in.cols, rows.stride = in.cols;
  rows.row_weights = weighted ? in.routing_weights : nullptr;
  return rows;
}

}  // namespace fp4kit
