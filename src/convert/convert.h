#pragma once
// `convert`: a DeepSeek V4 checkpoint to NVFP4 (recipe `moe`: the checkpoint ModelOpt's V4 exporter
// writes, routed experts to NVFP4, everything else byte-identical; `all-linear`: every scaled GEMM
// weight, in ModelOpt's general or compressed-tensors' layout), streaming a few tensors at a time
// into shards published atomically with their XXH3 recorded, resumable after a kill. See
// docs/convert.md.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "convert/convert_plan.h"
#include "formats/mxfp4.h"
#include "formats/nvfp4_gptq.h"
#include "formats/nvfp4_hessian_sweep.h"

namespace fp4kit {

struct ConvertActionStats {
  size_t tensors_written = 0;  // source tensors handled by this run (resumed runs skip shards)
  uint64_t input_bytes = 0;    // read by this run
  uint64_t output_bytes = 0;   // written by this run
  double seconds = 0;
};

// GPTQ's work in one run.
struct ConvertGptqStats {
  uint64_t tensors = 0;          // weights compensated
  uint64_t matrices = 0;         // XᵀX matrices factored (one per group of a grouped linear)
  uint64_t rtn_matrices = 0;     // of those, not usable (NaN/Inf, zero, not positive definite): plain rounding
  uint64_t damped_more = 0;      // needed a larger damping than --gptq-damping
  uint64_t rows = 0, skipped_rows = 0;  // rows compensated; rows holding NaN/Inf (plain rounding)
  std::vector<std::string> fallbacks;   // "<module>: why", for the matrices left to plain rounding
  double seconds = 0;
};

struct ConvertReport {
  ConvertActionStats keep, quantize, transcode, dequantize;
  Mxfp4CastStats cast;  // transcoded experts written by this run
  Nvfp4HessianStats hessian;  // hessian scales: blocks searched by this run, and those that fell back to mse
  ConvertGptqStats gptq;
  size_t shards = 0, shards_written = 0, shards_skipped = 0;
  size_t files_copied = 0;
  uint64_t input_bytes = 0, output_bytes = 0;  // by this run
  double seconds = 0;
  // Where O_DIRECT was taken (io/direct_io.h): source files read around the page cache, and shards of
  // this run written around it (the file system may refuse; then the same bytes go through the cache).
  size_t source_files_direct = 0, shards_written_direct = 0;

  const ConvertActionStats& stats(ConvertAction) const;  // Drop: `keep`'s, unused
  ConvertActionStats& stats(ConvertAction);
};

using ConvertProgressFn = std::function<void(uint64_t done, uint64_t total)>;

// InputError (exit code 2) for every bad input plan_convert finds, before anything is written; for
// a `dst` that holds anything but a convert of the same source with the same options (without
// `resume`; with `force` it is emptied first); and for a NaN or infinite source expert value
// unless `allow_nonfinite` (the shard being written is then not published). Error for I/O failures.
ConvertReport convert_checkpoint(const ConvertPlan& plan, const std::string& dst, const ConvertOptions& options,
                                 const ConvertProgressFn& progress = {});

}  // namespace fp4kit
