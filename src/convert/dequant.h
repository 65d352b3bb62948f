#pragma once
// `dequant`: a DeepSeek checkpoint (V4 FP8 + MXFP4, the FP8 repack, V3 FP8, or plain BF16) to a BF16
// checkpoint, exactly as DeepSeek's official code dequantizes, streaming one tensor (or one chunk
// of rows) at a time, into shards published atomically, resumable after a kill. See docs/dequant.md.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "convert/dequant_plan.h"

namespace fp4kit {

struct DequantOptions {
  unsigned threads = 1;
  uint64_t shard_bytes = 5'000'000'000;  // output shard size limit (a larger tensor gets its own shard)
  bool resume = false;                   // continue an unfinished (or re-check a finished) run into dst
  // Output bytes produced per step of a large tensor: bounds memory (two steps of output plus
  // their input are held). Never changes the output.
  uint64_t chunk_bytes = 64ull << 20;
  // Read and write around the page cache where the file system allows (io/direct_io.h); the
  // bytes are the same either way.
  bool direct_io = true;
};

struct DequantKindStats {
  size_t tensors = 0;         // in the output checkpoint
  size_t tensors_written = 0; // by this run (resumed runs skip finished shards)
  uint64_t input_bytes = 0;   // read by this run: weights and their scales
  uint64_t output_bytes = 0;  // written by this run
  double seconds = 0;         // spent by this run
};

struct DequantReport {
  DequantKindStats fp8_block, mxfp4, copy;
  size_t scales_dropped = 0;
  size_t shards = 0, shards_written = 0, shards_skipped = 0;  // skipped: finished by an earlier run
  size_t files_copied = 0;                                    // non-checkpoint files
  bool config_written = false;
  uint64_t input_bytes = 0;   // read by this run (all kinds)
  uint64_t output_bytes = 0;  // written by this run (shards only)
  double seconds = 0;         // the whole run

  const DequantKindStats& stats(DequantKind) const;
  DequantKindStats& stats(DequantKind);
};

// Progress in source bytes: done, total (shards finished by an earlier run count as done).
using DequantProgressFn = std::function<void(uint64_t done, uint64_t total)>;

// InputError (exit code 2) for every bad input plan_dequant finds, before anything is written, and
// for a `dst` that holds anything but a dequant of the same source (a finished or unfinished one
// without `resume`, or one of another source or other options even with it). Error for I/O failures.
DequantReport dequant_checkpoint(const std::string& src, const std::string& dst, const DequantOptions& options,
                                 const DequantProgressFn& progress = {});

// Test hook: the process ends with _exit(137) right after this many shards were published by the
// run, as if killed by SIGKILL at that point.
inline constexpr const char* kDequantCrashAfterShardsEnv = kCrashAfterShardsEnv;

}  // namespace fp4kit
