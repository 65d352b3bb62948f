// The CPU-only build: XᵀX sums on the GPU exist only with CUDA.
#include "base/error.h"
#include "cuda/xtx_device_sums.h"
#include "cuda/xtx_full.h"

namespace fp4kit::cuda {

namespace {
[[noreturn]] void xtx_unavailable() {
  throw InputError("--device cuda: this fp4kit was built without CUDA (no nvcc at configure time)");
}
}  // namespace

struct XtxFullWorkspace::Impl {};
XtxFullWorkspace::XtxFullWorkspace(int64_t) { xtx_unavailable(); }
XtxFullWorkspace::~XtxFullWorkspace() = default;
void XtxFullWorkspace::accumulate(const XtxRows&, int64_t, int64_t, double*, StreamHandle) { xtx_unavailable(); }

struct XtxBlockSums::Impl {};
XtxBlockSums::XtxBlockSums(int64_t, const std::string&, StreamHandle) { xtx_unavailable(); }
XtxBlockSums::~XtxBlockSums() = default;
XtxBlockSums::XtxBlockSums(XtxBlockSums&&) noexcept = default;
XtxBlockSums& XtxBlockSums::operator=(XtxBlockSums&&) noexcept = default;
int64_t XtxBlockSums::cols() const { xtx_unavailable(); }
size_t XtxBlockSums::bytes() const { xtx_unavailable(); }
void XtxBlockSums::add(const XtxRows&, StreamHandle) { xtx_unavailable(); }
std::vector<double> XtxBlockSums::read(StreamHandle) const { xtx_unavailable(); }

struct XtxFullSums::Impl {};
XtxFullSums::XtxFullSums(int64_t, int64_t, const std::string&, StreamHandle) { xtx_unavailable(); }
XtxFullSums::~XtxFullSums() = default;
XtxFullSums::XtxFullSums(XtxFullSums&&) noexcept = default;
XtxFullSums& XtxFullSums::operator=(XtxFullSums&&) noexcept = default;
int64_t XtxFullSums::groups() const { xtx_unavailable(); }
int64_t XtxFullSums::k() const { xtx_unavailable(); }
size_t XtxFullSums::bytes() const { xtx_unavailable(); }
void XtxFullSums::add(const XtxRows&, XtxFullWorkspace&, StreamHandle) { xtx_unavailable(); }
std::vector<float> XtxFullSums::read_f32(StreamHandle) const { xtx_unavailable(); }

}  // namespace fp4kit::cuda
