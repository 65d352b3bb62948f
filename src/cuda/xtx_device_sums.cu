#include "cuda/xtx_device_sums.h"

#include "cuda/check.cuh"
#include "cuda/xtx_blocks.h"

namespace fp4kit::cuda {

namespace {

DeviceBuffer zeroed(size_t bytes, const std::string& what, StreamHandle stream) {
  DeviceBuffer b(bytes, what);
  check(cudaMemsetAsync(b.data(), 0, bytes, stream), "cudaMemsetAsync " + what);
  return b;
}

template <class T>
std::vector<T> read_back(const void* device, size_t count, StreamHandle stream, const std::string& what) {
  std::vector<T> v(count);
  check(cudaMemcpyAsync(v.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost, stream), "cudaMemcpy " + what);
  check(cudaStreamSynchronize(stream), "synchronize " + what);
  return v;
}

}  // namespace

struct XtxBlockSums::Impl {
  int64_t cols = 0;
  std::string what;
  DeviceBuffer sums;
};

XtxBlockSums::XtxBlockSums(int64_t cols, const std::string& what, StreamHandle stream) : impl_(std::make_unique<Impl>()) {
  if (cols <= 0 || cols % 16 != 0) throw Error(what + ": " + std::to_string(cols) + " input channels, not a positive multiple of 16");
  impl_->cols = cols;
  impl_->what = what;
  impl_->sums = zeroed(static_cast<size_t>(cols / 16) * 256 * sizeof(double), what, stream);
}
XtxBlockSums::~XtxBlockSums() = default;
XtxBlockSums::XtxBlockSums(XtxBlockSums&&) noexcept = default;
XtxBlockSums& XtxBlockSums::operator=(XtxBlockSums&&) noexcept = default;

int64_t XtxBlockSums::cols() const { return impl_->cols; }
size_t XtxBlockSums::bytes() const { return impl_->sums.bytes(); }

void XtxBlockSums::add(const XtxRows& x, StreamHandle stream) {
  if (x.cols != impl_->cols)
    throw Error(impl_->what + ": input width changed from " + std::to_string(impl_->cols) + " to " + std::to_string(x.cols));
  xtx_blocks_accumulate(x, impl_->sums.data<double>(), stream);
}

std::vector<double> XtxBlockSums::read(StreamHandle stream) const {
  return read_back<double>(impl_->sums.data(), impl_->sums.bytes() / sizeof(double), stream, impl_->what);
}

struct XtxFullSums::Impl {
  int64_t groups = 1, k = 0;
  std::string what;
  DeviceBuffer sums;
};

XtxFullSums::XtxFullSums(int64_t groups, int64_t k, const std::string& what, StreamHandle stream)
    : impl_(std::make_unique<Impl>()) {
  if (groups < 1 || k < 1) throw Error(what + ": " + std::to_string(groups) + " groups of " + std::to_string(k) + " channels");
  impl_->groups = groups, impl_->k = k;
  impl_->what = what;
  impl_->sums = zeroed(static_cast<size_t>(groups * k * k) * sizeof(double), what, stream);
}
XtxFullSums::~XtxFullSums() = default;
XtxFullSums::XtxFullSums(XtxFullSums&&) noexcept = default;
XtxFullSums& XtxFullSums::operator=(XtxFullSums&&) noexcept = default;

int64_t XtxFullSums::groups() const { return impl_->groups; }
int64_t XtxFullSums::k() const { return impl_->k; }
size_t XtxFullSums::bytes() const { return impl_->sums.bytes(); }

void XtxFullSums::add(const XtxRows& x, XtxFullWorkspace& workspace, StreamHandle stream) {
  if (x.cols != impl_->groups * impl_->k)
    throw Error(impl_->what + ": input width changed from " + std::to_string(impl_->groups * impl_->k) + " to " +
                std::to_string(x.cols));
  workspace.accumulate(x, impl_->groups, impl_->k, impl_->sums.data<double>(), stream);
}

std::vector<float> XtxFullSums::read_f32(StreamHandle stream) const {
  const size_t n = static_cast<size_t>(impl_->groups * impl_->k * impl_->k);
  const DeviceBuffer out(n * sizeof(float), impl_->what + " as F32");
  xtx_full_symmetric_f32(impl_->sums.data<double>(), impl_->groups, impl_->k, out.data<float>(), stream);
  return read_back<float>(out.data(), n, stream, impl_->what);
}

}  // namespace fp4kit::cuda
