#pragma once
// The GPU forward pass as an engine::SequenceModel (what `serve --device cuda` drives): each
// sequence keeps its attention caches on the device between steps (GpuForward::SavedBatch). A
// decode step of the running sequences (one new token each, one sequence or many) runs as one batch
// through every product (GpuForward::advance_together), its checks read back once at its end;
// prompts and first steps run one sequence at a time. The next tokens are drawn on the device where
// the logits are (SequenceModel::advance_and_draw, cuda/token_draw.h) unless `draw_on_device` is
// false (then every step's logits go to the host, which draws them).
#include <memory>
#include <string>

#include "engine/sequence_model.h"
#include "gpu_engine/gpu_memory.h"
#include "gpu_engine/precision.h"

namespace fp4kit::gpu_engine {

// InputError (exit 2) where there is no GPU or no CUDA build. `max_tokens` sizes each sequence's caches.
std::unique_ptr<engine::SequenceModel> make_gpu_sequence_model(const std::string& model_dir, Precision precision,
                                                               GpuMemoryBudget memory, int64_t max_tokens,
                                                               bool draw_on_device = true);

engine::SequenceModelFactory gpu_sequence_model_factory(Precision precision, GpuMemoryBudget memory = {},
                                                        bool draw_on_device = true);

}  // namespace fp4kit::gpu_engine
