#pragma once
// Each command lives in its own file and registers itself here; main() adds them all to the app.
// The callback does the work and throws on failure (see main.cpp for the exit codes).
#include <CLI/CLI.hpp>

#include <string>

#include "base/error.h"
#include "cuda/device.h"
#include "gpu_engine/gpu_memory.h"
#include "gpu_engine/precision.h"

namespace fp4kit::cli {

using AddCommand = void (*)(CLI::App& app);

// `order` sorts the commands in --help: the order a user meets them in.
struct CommandRegistration {
  CommandRegistration(int order, AddCommand add);
};
void add_registered_commands(CLI::App& app);

// --gpu-memory on a command that runs the forward pass on the GPU (gpu_engine/gpu_memory.h).
inline void add_gpu_memory_option(CLI::App* cmd, std::string& target) {
  cmd->add_option("--gpu-memory", target,
                  "GPU memory the pass may hold: a size (80GB, 80GiB, 512MiB) or a share of the device (90%). "
                  "Default: what is free when it starts. Layers run the batch's sequences in chunks that fit; a "
                  "layer whose weights leave no room for one sequence is an error (exit 2)");
}

// --precision on a command that runs the forward pass (gpu_engine/precision.h).
inline void add_precision_option(CLI::App* cmd, std::string& target) {
  cmd->add_option("--precision", target,
                  "bf16 (the default on the GPU: BF16 operands and F32 accumulation in every product, as the serving "
                  "engines compute) or f32 (full F32, the check mode; the only one on the CPU)");
}

// A forward-pass command's --device, --precision and --gpu-memory, checked before any work: on the
// GPU, one clear error (exit 2) where there is none or the build has no CUDA; --gpu-memory only there.
struct ForwardDevice {
  bool gpu = false;
  gpu_engine::Precision precision = gpu_engine::Precision::F32;
  gpu_engine::GpuMemoryBudget memory;
};
inline ForwardDevice resolve_forward_device(const std::string& device, const std::string& precision,
                                            const std::string& gpu_memory) {
  ForwardDevice d;
  d.gpu = cuda::parse_device(device) == cuda::Device::Cuda;
  d.precision = gpu_engine::resolve_precision(precision, d.gpu);
  if (d.gpu) cuda::require_device();
  if (!d.gpu && !gpu_memory.empty()) throw InputError("--gpu-memory: only with --device cuda");
  d.memory = gpu_engine::parse_gpu_memory(gpu_memory);
  return d;
}

// Thrown by a command to end with a specific exit code after it has printed its own message.
struct ExitCode {
  int code;
};

}  // namespace fp4kit::cli
