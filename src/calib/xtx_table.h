#pragma once
// The statistic of activation-weighted block scales (`calibrate --hessian`, `convert --scales
// hessian`): for every calibrated linear module, the 16×16 diagonal blocks of XᵀX over its input
// channels (block j covers channels 16j..16j+15), summed in F64 over every input row, and the
// number of rows. Only the diagonal blocks: a 16-element weight block's error eᵀ·H·e needs the
// block of H over its own 16 channels, and the whole XᵀX of a V4 Pro expert (7168² values) would
// be 448 times larger.
//
// File (safetensors, written atomically: temporary name, fsync, rename):
//   <module>.xtx_blocks  F32 [K/16, 16, 16]  the blocks, symmetric, rounded once from the F64 sums
//   <module>.rows        I64 0-d             rows summed
// Metadata: "format" = kXtxFormat, "fingerprint" (the calibration run's, the same as in the amax
// file of that run), "model" (calibration_model_fingerprint of the checkpoint), and the run's
// samples, seq_len, w2_input, all_experts, data. docs/calibrate.md states the sizes.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace fp4kit {

inline constexpr std::string_view kXtxFormat = "fp4kit-xtx-blocks-1";
inline constexpr std::string_view kXtxBlocksSuffix = ".xtx_blocks";
inline constexpr std::string_view kXtxRowsSuffix = ".rows";

struct XtxBlocks {
  int64_t cols = 0;          // K, a multiple of 16
  int64_t rows = 0;
  std::vector<double> sums;  // [K/16][16][16]
};

class XtxTable {
 public:
  // Adds the rows x [rows, cols] (row-major) to the module's sums; each row times row_weights[r]
  // when given (its square joins XᵀX). cols must be a multiple of 16 and the same on every call.
  // The blocks are spread over `threads`; each block's sums run over the rows in order, so the
  // values do not depend on the thread count.
  void observe(const std::string& module, const float* x, int64_t rows, int64_t cols, const float* row_weights,
               unsigned threads);
  // Adds sums made elsewhere (another table's, or the GPU's: calib/xtx_observer.h) to the module's.
  // Error when the module has sums of another width.
  void add(const std::string& module, const XtxBlocks& blocks);
  // Joins another table: sums of the same module add up.
  void merge(const XtxTable& other);

  const std::map<std::string, XtxBlocks, std::less<>>& modules() const { return modules_; }
  size_t size() const { return modules_.size(); }

  void save(const std::string& path, const std::map<std::string, std::string>& metadata) const;
  // InputError naming file and tensor for anything but the layout above.
  static XtxTable load(const std::string& path);

 private:
  std::map<std::string, XtxBlocks, std::less<>> modules_;
};

}  // namespace fp4kit
