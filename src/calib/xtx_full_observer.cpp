#include "calib/xtx_full_observer.h"

#include <string>
#include <vector>

#include "base/parallel.h"

namespace fp4kit {

namespace {
constexpr int64_t kRowsPerChunk = 256;
// parallel_for starts its threads on each call: a chunk is spread over them only when its work
// (k²/2 · rows multiply-adds) pays for that.
constexpr double kParallelWork = 4e6;
}

std::vector<double> xtx_full_sums(const float* x, int64_t rows, int64_t stride, int64_t first, int64_t k,
                                  const float* row_weights, unsigned threads) {
  const size_t n = static_cast<size_t>(k);
  std::vector<double> sums(n * n, 0.0);
  // A chunk of rows transposed to F64 columns, so that each (i, j) is a contiguous dot product.
  std::vector<double> cols(n * kRowsPerChunk);
  for (int64_t r0 = 0; r0 < rows; r0 += kRowsPerChunk) {
    const int64_t m = std::min(kRowsPerChunk, rows - r0);
    for (int64_t r = 0; r < m; ++r) {
      const float* v = x + (r0 + r) * stride + first;
      const double w = row_weights ? static_cast<double>(row_weights[r0 + r]) : 1.0;
      for (size_t c = 0; c < n; ++c) cols[c * kRowsPerChunk + static_cast<size_t>(r)] = w * static_cast<double>(v[c]);
    }
    const double work = 0.5 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(m);
    parallel_for(n, 8, work >= kParallelWork ? threads : 1, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) {
        const double* ci = cols.data() + i * kRowsPerChunk;
        for (size_t j = i; j < n; ++j) {
          const double* cj = cols.data() + j * kRowsPerChunk;
          double s = 0.0;
          for (int64_t r = 0; r < m; ++r) s += ci[r] * cj[r];
          sums[i * n + j] += s;
        }
      }
    });
  }
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j) sums[j * n + i] = sums[i * n + j];
  return sums;
}

void XtxFullObserver::on_linear_input(const engine::LinearInput& in) {
  const std::string name(in.name);
  if (!writer_ || !is_calibrated_module(name)) return;
  // A K that is not a multiple of 16 is never quantized to NVFP4: nothing to compensate.
  const int64_t groups = name.ends_with(".attn.wo_a") ? o_groups_ : 1;
  if (groups < 1 || in.cols % groups != 0 || (in.cols / groups) % 16 != 0) return;
  const bool weighted = name.find(".ffn.experts.") != std::string::npos && name.ends_with(".w2") &&
                        w2_ == W2Input::Weighted && !in.routing_weights.empty();
  const int64_t k = in.cols / groups;
  std::vector<float> out(static_cast<size_t>(groups * k * k));
  for (int64_t g = 0; g < groups; ++g) {
    const std::vector<double> s =
        xtx_full_sums(in.x, in.rows, in.cols, g * k, k, weighted ? in.routing_weights.data() : nullptr, threads_);
    for (size_t i = 0; i < s.size(); ++i) out[static_cast<size_t>(g * k * k) + i] = static_cast<float>(s[i]);
  }
  writer_->add(name, groups, k, in.rows, out.data());
}

}  // namespace fp4kit
