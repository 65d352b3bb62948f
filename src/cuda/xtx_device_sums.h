#pragma once
// One module's XᵀX sums held in GPU memory, for the calibration observers that sum the rows a pass
// on the GPU shows them where they are (calib/xtx_observer.h, calib/xtx_full_observer.h) and copy
// the result back once per layer or module: the diagonal 16×16 blocks (cuda/xtx_blocks.h) or whole
// matrices (cuda/xtx_full.h), in F64. Plain C++ header; the CPU-only build links stand-ins whose
// constructors throw InputError.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda/runtime.h"
#include "cuda/xtx_full.h"
#include "cuda/xtx_rows.h"

namespace fp4kit::cuda {

class XtxBlockSums {
 public:
  // Zeroed F64 sums [cols/16][16][16] (cols a multiple of 16). DeviceError naming `what` and the
  // bytes asked where the device, or the --gpu-memory budget, has no room.
  XtxBlockSums(int64_t cols, const std::string& what, StreamHandle stream);
  ~XtxBlockSums();
  XtxBlockSums(XtxBlockSums&&) noexcept;
  XtxBlockSums& operator=(XtxBlockSums&&) noexcept;

  int64_t cols() const;
  size_t bytes() const;
  // Adds the rows (x.cols == cols()); asynchronous on `stream`.
  void add(const XtxRows& x, StreamHandle stream);
  // The sums once the work queued on `stream` is done: [cols/16][16][16], each block symmetric.
  std::vector<double> read(StreamHandle stream) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class XtxFullSums {
 public:
  // Zeroed F64 sums of `groups` k×k matrices; DeviceError as above.
  XtxFullSums(int64_t groups, int64_t k, const std::string& what, StreamHandle stream);
  ~XtxFullSums();
  XtxFullSums(XtxFullSums&&) noexcept;
  XtxFullSums& operator=(XtxFullSums&&) noexcept;

  int64_t groups() const;
  int64_t k() const;
  size_t bytes() const;
  // Adds the rows (x.cols == groups·k; group g takes columns [g·k, (g+1)·k)); asynchronous.
  void add(const XtxRows& x, XtxFullWorkspace& workspace, StreamHandle stream);
  // [groups][k][k] row-major, symmetric, each F64 sum rounded once to F32 (on the device: an F32
  // copy, groups·k²·4 bytes, is held while it comes back; DeviceError naming `what` where it does
  // not fit).
  std::vector<float> read_f32(StreamHandle stream) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fp4kit::cuda
