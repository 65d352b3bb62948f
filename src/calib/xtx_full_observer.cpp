#include "calib/xtx_full_observer.h"

#include <string>
#include <vector>

#include "base/error.h"
#include "base/parallel.h"
#include "calib/xtx_device_rows.h"

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

XtxFullObserver::XtxFullObserver(W2Input w2, unsigned threads) : w2_(w2), threads_(threads) {}
XtxFullObserver::~XtxFullObserver() = default;

bool XtxFullObserver::recorded(std::string_view name, int64_t cols, int64_t& groups) const {
  if (!writer_ || !is_calibrated_module(name)) return false;
  // A K that is not a multiple of 16 is never quantized to NVFP4: nothing to compensate.
  groups = name.ends_with(".attn.wo_a") ? o_groups_ : 1;
  return groups >= 1 && cols % groups == 0 && (cols / groups) % 16 == 0;
}

void XtxFullObserver::on_linear_input(const engine::LinearInput& in) {
  const std::string name(in.name);
  int64_t groups = 1;
  if (!recorded(name, in.cols, groups)) return;
  const bool weighted = w2_rows_weighted(name, w2_) && !in.routing_weights.empty();
  const int64_t k = in.cols / groups;
  std::vector<float> out(static_cast<size_t>(groups * k * k));
  for (int64_t g = 0; g < groups; ++g) {
    const std::vector<double> s =
        xtx_full_sums(in.x, in.rows, in.cols, g * k, k, weighted ? in.routing_weights.data() : nullptr, threads_);
    for (size_t i = 0; i < s.size(); ++i) out[static_cast<size_t>(g * k * k) + i] = static_cast<float>(s[i]);
  }
  writer_->add(name, groups, k, in.rows, out.data());
}

void XtxFullObserver::on_linear_device_rows(const engine::DeviceLinearInput& in) {
  int64_t groups = 1;
  if (!recorded(in.name, in.cols, groups)) return;
  stream_ = in.stream;
  if (!workspace_) workspace_ = std::make_unique<cuda::XtxFullWorkspace>();
  auto it = device_.find(in.name);
  if (it == device_.end()) {
    const std::string name(in.name);
    const int64_t k = in.cols / groups;
    try {
      it = device_.emplace(name, DeviceModule{cuda::XtxFullSums(groups, k, "XᵀX of " + name, in.stream), 0}).first;
    } catch (const DeviceError& e) {
      // Where the layer runs in chunks, every module's matrix waits for the layer's last chunk.
      size_t held = 0;
      for (const auto& [other, m] : device_) held += m.sums.bytes();
      const std::string why =
          device_.empty() ? "one module's matrix is held at a time: a larger --gpu-memory, or --hessian-mode blocks"
                          : std::to_string(device_.size()) + " matrices of this layer (" +
                                std::to_string((held + (1u << 20) - 1) >> 20) +
                                " MiB) wait on the device for the layer's last chunk: run each layer in one chunk "
                                "(fewer --samples, or a larger --gpu-memory), or use --hessian-mode blocks";
      throw DeviceError(std::string(e.what()) + "; " + why);
    }
  }
  it->second.sums.add(xtx_rows_of(in, w2_rows_weighted(in.name, w2_)), *workspace_, in.stream);
  it->second.rows += in.rows;
  if (in.last_chunk) flush(it);
}

void XtxFullObserver::flush(std::map<std::string, DeviceModule, std::less<>>::iterator module) {
  const DeviceModule& m = module->second;
  const std::vector<float> values = m.sums.read_f32(stream_);
  writer_->add(module->first, m.sums.groups(), m.sums.k(), m.rows, values.data());
  device_.erase(module);
}

void XtxFullObserver::end_layer() {
  while (!device_.empty()) flush(device_.begin());
  workspace_.reset();  // its F64 rows are not part of what the next layer's chunks are sized for
}

}  // namespace fp4kit
