#pragma once
// The GPU forward pass as an engine::LayerRunner, so that calibrate runs on the GPU: the observer
// gets each linear input's amax computed on the device, and the rows on the device where it wants
// them.
#include <cstdint>
#include <memory>
#include <string>

#include "engine/layer_runner.h"
#include "gpu_engine/gpu_memory.h"
#include "gpu_engine/precision.h"

namespace fp4kit::gpu_engine {

// InputError (exit 2) where there is no GPU or no CUDA build. `options.threads` is not used.
// max_chunk_sequences: at most this many sequences per chunk of a layer (0: as many as fit).
std::unique_ptr<engine::LayerRunner> make_gpu_runner(const std::string& model_dir, const engine::EngineOptions& options,
                                                     Precision precision, GpuMemoryBudget memory = {},
                                                     int64_t max_chunk_sequences = 0);

// The factory a driver takes (engine::LayerRunnerFactory) for GPU runners of one precision.
engine::LayerRunnerFactory gpu_runner_factory(Precision precision, GpuMemoryBudget memory = {},
                                              int64_t max_chunk_sequences = 0);

}  // namespace fp4kit::gpu_engine
