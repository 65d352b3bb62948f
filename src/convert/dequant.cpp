#include "convert/dequant.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <optional>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/parallel.h"
#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "io/checkpoint_index.h"
#include "io/quote_name.h"
#include "io/safetensors_writer.h"
#include "convert/fp8_block_rows.h"
#include "convert/output_directory.h"
#include "convert/shard_data_stream.h"
#include "convert/sharded_job.h"
#include "convert/source_checkpoint.h"

namespace fp4kit {

namespace fs = std::filesystem;

namespace {

// Every output shard carries the same metadata, so a shard's bytes depend on its tensors alone.
const std::map<std::string, std::string> kDequantShardMetadata = {{"format", "pt"}};
// Pieces a chunk is cut into for the threads: about this many output bytes each.
constexpr uint64_t kDequantPieceBytes = 1ull << 20;
// Chunks smaller than this are written on the calling thread (not worth a thread hand-off).
constexpr uint64_t kAsyncWriteBytes = 1ull << 20;

using Clock = std::chrono::steady_clock;

// ---- streaming the data ----------------------------------------------------------------------

// Writes chunks on a second thread, so that writing one overlaps reading and computing the next.
// Two output buffers: the one being filled and the one being written.
class ChunkWriter {
 public:
  // The buffer to fill next, at least `bytes` long; waits until its previous write is done.
  std::span<std::byte> buffer(size_t bytes) {
    auto& b = buffers_[current_];
    if (b.size() < (bytes + 1) / 2) b.resize((bytes + 1) / 2);
    return std::as_writable_bytes(std::span(b)).first(bytes);
  }
  uint16_t* buffer_u16(size_t elements) { return reinterpret_cast<uint16_t*>(buffer(2 * elements).data()); }

  // Appends the first `bytes` of the current buffer to `writer`, after every earlier chunk.
  void submit(ShardDataStream& writer, size_t bytes) {
    const auto chunk = std::as_bytes(std::span(buffers_[current_])).first(bytes);
    wait();
    if (bytes < kAsyncWriteBytes) {
      writer.append(chunk);
      return;
    }
    pending_ = std::async(std::launch::async, [&writer, chunk] { writer.append(chunk); });
    current_ ^= 1;
  }

  // Waits for the write in flight, rethrowing its error.
  void wait() {
    if (pending_.valid()) pending_.get();
  }
  // The same on an error path: the writer must not be destroyed under a running write.
  void abandon() noexcept {
    try {
      wait();
    } catch (...) {
    }
  }

 private:
  std::vector<uint16_t> buffers_[2];
  int current_ = 0;
  std::future<void> pending_;
};

// A byte range of a source tensor, as drop_cache wants it.
io::TensorInfo byte_range(const io::TensorInfo& t, uint64_t offset, uint64_t bytes) {
  return io::TensorInfo{t.name, t.dtype, {}, t.begin + offset, t.begin + offset + bytes};
}

size_t rows_per_step(uint64_t row_bytes, uint64_t budget, size_t multiple) {
  const uint64_t rows = std::max<uint64_t>(1, budget / std::max<uint64_t>(row_bytes, 1));
  return static_cast<size_t>(std::max<uint64_t>(multiple, rows / multiple * multiple));
}

class ShardStreamer : public ShardSink {
 public:
  ShardStreamer(const DequantPlan& plan, const DequantOptions& options, DequantReport& report,
                const DequantProgressFn& progress, uint64_t total)
      : plan_(plan), options_(options), report_(report), progress_(progress), total_(total) {
    if (options.direct_io)
      for (const auto& file : plan.source_files) file->enable_direct_reads();
  }

  void skip(const io::PlannedShard& shard) override {
    for (size_t i : shard.tensors) done_ += plan_.tensors[i].input_bytes();
    report_progress();
  }

  std::optional<std::string> write(const io::PlannedShard& shard, const std::string& path) override {
    io::SafetensorsWriter writer(path);
    writer.set_metadata(kDequantShardMetadata);
    std::unordered_map<std::string_view, size_t> by_name;
    for (size_t i : shard.tensors) {
      const io::TensorInfo& t = plan_.tensors[i].output;
      writer.declare(t.name, t.dtype, t.shape);
      by_name.emplace(t.name, i);
    }
    writer.begin();
    ShardDataStream stream(writer, options_.direct_io);
    try {
      for (const io::TensorInfo& out : writer.layout()) emit(plan_.tensors[by_name.at(out.name)], stream);
      chunks_.wait();
    } catch (...) {
      chunks_.abandon();
      throw;
    }
    stream.finish();
    writer.commit();
    drop_written_pages(path);
    for (size_t i : shard.tensors) report_.output_bytes += plan_.tensors[i].output.nbytes();
    return std::nullopt;
  }

 private:
  void emit(const DequantTensor& t, ShardDataStream& writer) {
    const auto start = Clock::now();
    t.weight.file->advise_sequential(*t.weight.info);
    switch (t.kind) {
      case DequantKind::Copy: copy(t, writer); break;
      case DequantKind::Fp8Block: fp8_block(t, writer); break;
      case DequantKind::Mxfp4: mxfp4(t, writer); break;
    }
    if (t.scale.info) t.scale.file->drop_cache(*t.scale.info);
    DequantKindStats& stats = report_.stats(t.kind);
    ++stats.tensors_written;
    stats.input_bytes += t.input_bytes();
    stats.output_bytes += t.output.nbytes();
    stats.seconds += std::chrono::duration<double>(Clock::now() - start).count();
    report_.input_bytes += t.input_bytes();
  }

  // Bytes as they are, in chunks read by the threads in pieces.
  void copy(const DequantTensor& t, ShardDataStream& writer) {
    const io::TensorInfo& src = *t.weight.info;
    const uint64_t total = src.nbytes();
    for (uint64_t offset = 0; offset < total;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(options_.chunk_bytes, total - offset));
      const std::span<std::byte> out = chunks_.buffer(n);
      parallel_for(n, kDequantPieceBytes, options_.threads, [&](size_t a, size_t b) {
        t.weight.file->read_range(src, offset + a, out.subspan(a, b - a));
      });
      chunks_.submit(writer, n);
      t.weight.file->drop_cache(byte_range(src, offset, n));
      offset += n;
      advance(n);
    }
  }

  // Steps of whole 128-row blocks; every step's scales start at its first block row.
  void fp8_block(const DequantTensor& t, ShardDataStream& writer) {
    const io::TensorInfo& src = *t.weight.info;
    const size_t rows = static_cast<size_t>(src.shape[0]), cols = static_cast<size_t>(src.shape[1]);
    if (rows == 0 || cols == 0) return;
    const Fp8ScaleKind kind = t.storage == Storage::Fp8BlockF32 ? Fp8ScaleKind::F32 : Fp8ScaleKind::E8M0;
    const std::vector<std::byte> scales = t.scale.file->read_all(*t.scale.info);  // 1/16384 of the weight
    const size_t step = rows_per_step(2 * cols, options_.chunk_bytes, kFp8BlockSize);
    for (size_t r0 = 0; r0 < rows; r0 += step) {
      const size_t n = std::min(step, rows - r0);
      dequantize_fp8_block_rows(t.weight, scales, kind, r0, n, input_, chunks_.buffer_u16(n * cols), options_.threads);
      chunks_.submit(writer, 2 * n * cols);
      t.weight.file->drop_cache(byte_range(src, r0 * cols, n * cols));
      advance(n * cols + (r0 + n == rows ? t.scale.info->nbytes() : 0));
    }
  }

  // Steps of whole rows: packed bytes and their scale rows.
  void mxfp4(const DequantTensor& t, ShardDataStream& writer) {
    const io::TensorInfo& src = *t.weight.info;
    const io::TensorInfo& scale = *t.scale.info;
    const size_t rows = static_cast<size_t>(t.output.shape[0]), cols = static_cast<size_t>(t.output.shape[1]);
    if (rows == 0 || cols == 0) return;
    const size_t packed_cols = cols / 2, scale_cols = cols / kMxfp4BlockSize;
    const Mxfp4Kernels& kernels = mxfp4_kernels();
    const size_t step = rows_per_step(2 * cols, options_.chunk_bytes, 1);
    const size_t piece = std::max<size_t>(1, kDequantPieceBytes / (2 * cols));
    for (size_t r0 = 0; r0 < rows; r0 += step) {
      const size_t n = std::min(step, rows - r0);
      input_.resize(n * (packed_cols + scale_cols));
      uint8_t* packed = input_.data();
      uint8_t* scales = input_.data() + n * packed_cols;
      uint16_t* out = chunks_.buffer_u16(n * cols);
      parallel_for(n, piece, options_.threads, [&](size_t a, size_t b) {
        t.weight.file->read_range(src, (r0 + a) * packed_cols,
                                  std::as_writable_bytes(std::span(packed + a * packed_cols, (b - a) * packed_cols)));
        t.scale.file->read_range(scale, (r0 + a) * scale_cols,
                                 std::as_writable_bytes(std::span(scales + a * scale_cols, (b - a) * scale_cols)));
        kernels.dequantize_bf16(packed + a * packed_cols, scales + a * scale_cols, (b - a) * cols, out + a * cols);
      });
      chunks_.submit(writer, 2 * n * cols);
      t.weight.file->drop_cache(byte_range(src, r0 * packed_cols, n * packed_cols));
      advance(n * (packed_cols + scale_cols));
    }
  }

  void advance(uint64_t source_bytes) {
    done_ += source_bytes;
    report_progress();
  }
  void report_progress() const {
    if (progress_) progress_(std::min(done_, total_), total_);
  }

  const DequantPlan& plan_;
  const DequantOptions& options_;
  DequantReport& report_;
  const DequantProgressFn& progress_;
  const uint64_t total_;
  uint64_t done_ = 0;
  ChunkWriter chunks_;
  std::vector<uint8_t> input_;  // source bytes of the current step
};

}  // namespace

const DequantKindStats& DequantReport::stats(DequantKind k) const {
  switch (k) {
    case DequantKind::Fp8Block: return fp8_block;
    case DequantKind::Mxfp4: return mxfp4;
    case DequantKind::Copy: break;
  }
  return copy;
}

DequantKindStats& DequantReport::stats(DequantKind k) {
  return const_cast<DequantKindStats&>(std::as_const(*this).stats(k));
}

DequantReport dequant_checkpoint(const std::string& src, const std::string& dst, const DequantOptions& options,
                                 const DequantProgressFn& progress) {
  const auto start = Clock::now();
  if (options.shard_bytes == 0) throw InputError("--shard-size must be positive");
  if (options.chunk_bytes == 0) throw Error("dequant: the chunk size must be positive");
  std::error_code ec;
  if (fs::exists(dst, ec) && fs::equivalent(src, dst, ec))
    throw InputError(dst + ": is the source directory; the output needs a directory of its own");

  // Everything is checked before anything is written.
  const DequantPlan plan = plan_dequant(src, dst, options.shard_bytes);
  DequantReport report;
  report.shards = plan.shards.size();
  report.scales_dropped = plan.scales_dropped;
  for (const DequantTensor& t : plan.tensors) ++report.stats(t.kind).tensors;
  ShardStreamer streamer(plan, options, report, progress, plan.input_bytes());

  ShardedJob job;
  job.plan_file = &dequant_plan_file();
  job.manifest = plan.manifest;
  job.resume = options.resume;
  job.src_dir = src;
  job.dst_dir = dst;
  job.shards = &plan.shards;
  job.shard_outputs =
      planned_shard_outputs(plan.shards, [&](size_t i) -> const io::TensorInfo& { return plan.tensors[i].output; });
  job.shard_metadata = kDequantShardMetadata;
  job.extra_files = plan.extra_files;
  if (plan.config_text) job.text_files.emplace_back(std::string(io::kConfigFileName), *plan.config_text);
  job.index = plan.index();
  const ShardedJobCounts counts = run_sharded_job(job, streamer);
  report.shards_written = counts.shards_written;
  report.shards_skipped = counts.shards_skipped;
  report.files_copied = counts.files_copied;
  report.config_written = plan.config_text.has_value();
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

}  // namespace fp4kit
