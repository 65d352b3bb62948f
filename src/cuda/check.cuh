#pragma once
// CUDA errors become DeviceError (out of memory too, with the size asked for), naming the call or the
// kernel and its shape. Launchers call check_launch() right after a launch: a bad configuration is
// reported there, a fault inside the kernel at the next synchronizing call.
#include <cuda_runtime.h>

#include <string>
#include <type_traits>

#include "base/error.h"

namespace fp4kit::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const std::string& what) {
  throw DeviceError(what + ": CUDA error " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

inline void check(cudaError_t err, const std::string& what) {
  if (err != cudaSuccess) throw_cuda_error(err, what);
}
inline void check(cudaError_t err, const char* what) {  // no string made unless there is an error
  if (err != cudaSuccess) throw_cuda_error(err, what);
}

// The message made only on an error: building it on every call (a few std::to_string and
// concatenations) costs the host more than many of the kernels launched take on the device.
template <class What>
  requires std::is_invocable_r_v<std::string, What>
inline void check(cudaError_t err, What&& what) {
  if (err != cudaSuccess) throw_cuda_error(err, what());
}

// After `kernel<<<...>>>`: `shape` says what it was launched on ("M=8 N=3072 K=7168"); a callable
// that returns it where the launch is on a decode step's path.
inline void check_launch(const char* kernel, const std::string& shape) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda_error(err, std::string("kernel ") + kernel + " [" + shape + "]");
}
template <class Shape>
  requires std::is_invocable_r_v<std::string, Shape>
inline void check_launch(const char* kernel, Shape&& shape) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda_error(err, std::string("kernel ") + kernel + " [" + std::string(shape()) + "]");
}

constexpr unsigned ceil_div(size_t a, size_t b) { return static_cast<unsigned>((a + b - 1) / b); }

}  // namespace fp4kit::cuda
