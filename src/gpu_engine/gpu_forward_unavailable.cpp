// The CPU-only build: no CUDA compiler was found when fp4kit was configured.
#include "base/error.h"
#include "gpu_engine/gpu_forward.h"

namespace fp4kit::gpu_engine {

namespace {
[[noreturn]] void unavailable() {
  throw InputError("--device cuda: this fp4kit was built without CUDA (no nvcc at configure time)");
}
}  // namespace

struct GpuForward::Impl {};
struct GpuForward::Batch {};

GpuForward::GpuForward(const std::string&, const GpuForwardOptions&) { unavailable(); }
GpuForward::~GpuForward() = default;
const engine::ModelConfig& GpuForward::config() const { unavailable(); }
bool GpuForward::resident() const { unavailable(); }
void GpuForward::rerun_layer(int64_t, std::vector<float>&) { unavailable(); }
std::vector<float> GpuForward::forward(const std::vector<int64_t>&, int64_t, std::vector<double>*) { unavailable(); }
void GpuForward::embed(const std::vector<int64_t>&, int64_t) { unavailable(); }
void GpuForward::embed_continued(const std::vector<int64_t>&, int64_t, int64_t) { unavailable(); }
void GpuForward::embed_next(const std::vector<int64_t>&) { unavailable(); }
void GpuForward::run_layer(int64_t) { unavailable(); }
std::vector<float> GpuForward::hidden() const { unavailable(); }
void GpuForward::set_hidden(const std::vector<float>&, int64_t) { unavailable(); }
std::vector<float> GpuForward::head(bool) { unavailable(); }
std::vector<engine::DrawnToken> GpuForward::head_draw(const std::vector<engine::TokenDraw>&) { unavailable(); }
void GpuForward::start_groups(int64_t) { unavailable(); }
GpuForward::SavedBatch::SavedBatch() = default;
GpuForward::SavedBatch::~SavedBatch() = default;
GpuForward::SavedBatch::SavedBatch(SavedBatch&&) noexcept = default;
GpuForward::SavedBatch& GpuForward::SavedBatch::operator=(SavedBatch&&) noexcept = default;
GpuForward::SavedBatch GpuForward::save_batch() { unavailable(); }
void GpuForward::restore_batch(SavedBatch) { unavailable(); }
GpuForward::SavedBatch GpuForward::new_sequence(int64_t) { unavailable(); }
std::vector<float> GpuForward::advance_together(std::vector<SavedBatch>&, const std::vector<int64_t>&) { unavailable(); }
std::vector<engine::DrawnToken> GpuForward::advance_together_draw(std::vector<SavedBatch>&, const std::vector<int64_t>&,
                                                                 const std::vector<engine::TokenDraw>&) {
  unavailable();
}
void GpuForward::next_group() { unavailable(); }

}  // namespace fp4kit::gpu_engine
