#include "convert/dequant.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <optional>
#include <sstream>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/parallel.h"
#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "io/atomic_file.h"
#include "io/checkpoint_index.h"
#include "io/quote_name.h"
#include "io/safetensors_writer.h"
#include "io/strict_json.h"

namespace fp4kit {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kConfigFileName = "config.json";
// Every output shard carries the same metadata, so a shard's bytes depend on its tensors alone.
const std::map<std::string, std::string> kShardMetadata = {{"format", "pt"}};
// Pieces a chunk is cut into for the threads: about this many output bytes each.
constexpr uint64_t kPieceBytes = 1ull << 20;
// Chunks smaller than this are written on the calling thread (not worth a thread hand-off).
constexpr uint64_t kAsyncWriteBytes = 1ull << 20;

using Clock = std::chrono::steady_clock;

std::string join(const std::string& dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  return dir.back() == '/' ? dir + std::string(name) : dir + "/" + std::string(name);
}

bool is_regular_file(const std::string& path, uint64_t* size = nullptr) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  if (size) *size = static_cast<uint64_t>(st.st_size);
  return true;
}

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

// ---- the output directory ------------------------------------------------------------------

enum class Destination { Empty, Unfinished, Finished };

// What dst holds, refusing everything but nothing at all or a dequant of the same source with the
// same options (and that only with --resume).
Destination inspect_destination(const std::string& dst, const DequantPlan& plan, bool resume) {
  std::error_code ec;
  if (!fs::exists(dst, ec)) return Destination::Empty;
  if (!fs::is_directory(dst, ec)) throw InputError(dst + ": exists and is not a directory");
  std::vector<std::string> entries;
  for (const auto& entry : fs::directory_iterator(dst, ec)) {
    const std::string name = entry.path().filename().string();
    // A plan file's temporary alone is what a run killed before its first shard leaves.
    if (!(is_temporary_file_name(name) && name.starts_with("." + std::string(kDequantPlanFileName))))
      entries.push_back(name);
  }
  if (ec) throw InputError(dst + ": cannot list the directory: " + ec.message());
  if (entries.empty()) return Destination::Empty;

  const std::string plan_path = join(dst, kDequantPlanFileName);
  if (!is_regular_file(plan_path)) {
    std::sort(entries.begin(), entries.end());
    throw InputError(dst + ": is not empty (it holds " + io::quote_name(entries.front()) +
                     ") and is not an fp4kit dequant output; refusing to overwrite it: choose an empty or new directory");
  }
  nlohmann::json stored;
  try {
    std::ifstream in(plan_path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    stored = io::parse_strict_json(text.str(), plan_path);
  } catch (const InputError& e) {
    throw InputError(std::string(e.what()) + " (not a dequant plan this fp4kit can read: choose an empty directory)");
  }
  const std::string difference = dequant_manifest_difference(stored, plan.manifest);
  if (!difference.empty())
    throw InputError(dst + ": holds an fp4kit dequant of another source or with other options (" + difference +
                     "); refusing to overwrite it: choose an empty or new directory");
  const bool complete = stored.is_object() && stored.value("complete", false) == true;
  if (!resume && complete)
    throw InputError(dst + ": already holds a finished dequant of this source; add --resume to check and finish it "
                           "again, or choose an empty directory");
  if (!resume)
    throw InputError(dst + ": holds an unfinished dequant of this source (was it killed?); add --resume to continue "
                           "it, or choose an empty directory");
  return complete ? Destination::Finished : Destination::Unfinished;
}

// A killed run leaves AtomicFile temporaries behind; none of them is ever reused.
void remove_temporaries(const std::string& dst) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (auto it = fs::recursive_directory_iterator(dst, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_regular_file(type_ec) && !it->is_symlink(type_ec) &&
        is_temporary_file_name(it->path().filename().string()))
      stale.push_back(it->path());
  }
  if (ec) throw Error(dst + ": cannot list the directory: " + ec.message());
  for (const fs::path& p : stale)
    if (!fs::remove(p, ec) && ec) throw Error(p.string() + ": cannot remove a stale temporary file: " + ec.message());
}

// A shard an earlier run published: its header must list exactly the planned tensors and the file
// must end where its data does. (It was renamed into place only after an fsync, so it is whole.)
bool shard_is_finished(const std::string& path, const DequantPlan& plan, const io::PlannedShard& shard) {
  if (!is_regular_file(path)) return false;
  try {
    const io::SafetensorsFile file = io::SafetensorsFile::open(path);
    if (file.header().metadata != kShardMetadata || file.tensors().size() != shard.tensors.size()) return false;
    uint64_t data_end = 0;
    for (size_t i : shard.tensors) {
      const io::TensorInfo& want = plan.tensors[i].output;
      const io::TensorInfo* got = file.find(want.name);
      if (!got || got->dtype != want.dtype || got->shape != want.shape) return false;
      data_end = std::max(data_end, got->end);
    }
    return file.file_size() == file.header().data_offset + data_end;
  } catch (const InputError&) {
    return false;
  }
}

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
  void submit(io::SafetensorsWriter& writer, size_t bytes) {
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

// A published shard is fsynced, so its pages are clean and can leave the page cache: without this,
// an 865 GB run fills the cache with output nobody reads back. Best effort.
void drop_written_pages(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// A byte range of a source tensor, as drop_cache wants it.
io::TensorInfo byte_range(const io::TensorInfo& t, uint64_t offset, uint64_t bytes) {
  return io::TensorInfo{t.name, t.dtype, {}, t.begin + offset, t.begin + offset + bytes};
}

size_t rows_per_step(uint64_t row_bytes, uint64_t budget, size_t multiple) {
  const uint64_t rows = std::max<uint64_t>(1, budget / std::max<uint64_t>(row_bytes, 1));
  return static_cast<size_t>(std::max<uint64_t>(multiple, rows / multiple * multiple));
}

class ShardStreamer {
 public:
  ShardStreamer(const DequantPlan& plan, const DequantOptions& options, DequantReport& report,
                const DequantProgressFn& progress, uint64_t total)
      : plan_(plan), options_(options), report_(report), progress_(progress), total_(total) {}

  void skip(const io::PlannedShard& shard) {
    for (size_t i : shard.tensors) done_ += plan_.tensors[i].input_bytes();
    report_progress();
  }

  void write(const io::PlannedShard& shard, const std::string& path) {
    io::SafetensorsWriter writer(path);
    writer.set_metadata(kShardMetadata);
    std::unordered_map<std::string_view, size_t> by_name;
    for (size_t i : shard.tensors) {
      const io::TensorInfo& t = plan_.tensors[i].output;
      writer.declare(t.name, t.dtype, t.shape);
      by_name.emplace(t.name, i);
    }
    writer.begin();
    try {
      for (const io::TensorInfo& out : writer.layout()) emit(plan_.tensors[by_name.at(out.name)], writer);
      chunks_.wait();
    } catch (...) {
      chunks_.abandon();
      throw;
    }
    writer.commit();
    drop_written_pages(path);
    for (size_t i : shard.tensors) report_.output_bytes += plan_.tensors[i].output.nbytes();
  }

 private:
  void emit(const DequantTensor& t, io::SafetensorsWriter& writer) {
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
  void copy(const DequantTensor& t, io::SafetensorsWriter& writer) {
    const io::TensorInfo& src = *t.weight.info;
    const uint64_t total = src.nbytes();
    for (uint64_t offset = 0; offset < total;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(options_.chunk_bytes, total - offset));
      const std::span<std::byte> out = chunks_.buffer(n);
      parallel_for(n, kPieceBytes, options_.threads, [&](size_t a, size_t b) {
        t.weight.file->read_range(src, offset + a, out.subspan(a, b - a));
      });
      chunks_.submit(writer, n);
      t.weight.file->drop_cache(byte_range(src, offset, n));
      offset += n;
      advance(n);
    }
  }

  // Steps of whole 128-row blocks; every step's scales start at its first block row.
  void fp8_block(const DequantTensor& t, io::SafetensorsWriter& writer) {
    const io::TensorInfo& src = *t.weight.info;
    const size_t rows = static_cast<size_t>(src.shape[0]), cols = static_cast<size_t>(src.shape[1]);
    if (rows == 0 || cols == 0) return;
    const Fp8ScaleKind kind = t.storage == Storage::Fp8BlockF32 ? Fp8ScaleKind::F32 : Fp8ScaleKind::E8M0;
    const std::vector<std::byte> scales = t.scale.file->read_all(*t.scale.info);  // 1/16384 of the weight
    const size_t scale_row_bytes = fp8_scale_dim(cols) * (kind == Fp8ScaleKind::F32 ? 4 : 1);
    const Fp8BlockKernels& kernels = fp8_block_kernels();
    const size_t step = rows_per_step(2 * cols, options_.chunk_bytes, kFp8BlockSize);
    const size_t piece = std::max<size_t>(1, kPieceBytes / (2 * cols));
    for (size_t r0 = 0; r0 < rows; r0 += step) {
      const size_t n = std::min(step, rows - r0);
      input_.resize(n * cols);
      uint16_t* out = chunks_.buffer_u16(n * cols);
      const Fp8BlockShape shape{n, cols, kind};
      const std::byte* step_scales = scales.data() + (r0 / kFp8BlockSize) * scale_row_bytes;
      parallel_for(n, piece, options_.threads, [&](size_t a, size_t b) {
        t.weight.file->read_range(src, (r0 + a) * cols, std::as_writable_bytes(std::span(input_)).subspan(a * cols, (b - a) * cols));
        kernels.dequantize_bf16(input_.data(), step_scales, shape, a, b, out + a * cols);
      });
      chunks_.submit(writer, 2 * n * cols);
      t.weight.file->drop_cache(byte_range(src, r0 * cols, n * cols));
      advance(n * cols + (r0 + n == rows ? t.scale.info->nbytes() : 0));
    }
  }

  // Steps of whole rows: packed bytes and their scale rows.
  void mxfp4(const DequantTensor& t, io::SafetensorsWriter& writer) {
    const io::TensorInfo& src = *t.weight.info;
    const io::TensorInfo& scale = *t.scale.info;
    const size_t rows = static_cast<size_t>(t.output.shape[0]), cols = static_cast<size_t>(t.output.shape[1]);
    if (rows == 0 || cols == 0) return;
    const size_t packed_cols = cols / 2, scale_cols = cols / kMxfp4BlockSize;
    const Mxfp4Kernels& kernels = mxfp4_kernels();
    const size_t step = rows_per_step(2 * cols, options_.chunk_bytes, 1);
    const size_t piece = std::max<size_t>(1, kPieceBytes / (2 * cols));
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

// ---- the other files -------------------------------------------------------------------------

void copy_file_atomically(const std::string& from, const std::string& to) {
  const int fd = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(from + ": cannot open: " + errno_text(errno));
  try {
    io::AtomicFile out(to);
    std::vector<std::byte> buffer(1 << 20);
    for (;;) {
      const ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw Error(from + ": cannot read: " + errno_text(errno));
      if (n == 0) break;
      out.write(std::span(buffer).first(static_cast<size_t>(n)));
    }
    out.commit();
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

std::optional<unsigned> crash_after_shards() {
  const char* value = std::getenv(kDequantCrashAfterShardsEnv);
  if (!value || !*value) return std::nullopt;
  char* end = nullptr;
  const unsigned long n = std::strtoul(value, &end, 10);
  if (*end != '\0' || n == 0) return std::nullopt;
  return static_cast<unsigned>(n);
}

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
  const Destination destination = inspect_destination(dst, plan, options.resume);

  DequantReport report;
  report.shards = plan.shards.size();
  report.scales_dropped = plan.scales_dropped;
  for (const DequantTensor& t : plan.tensors) ++report.stats(t.kind).tensors;

  fs::create_directories(dst, ec);
  if (ec) throw Error(dst + ": cannot create the directory: " + ec.message());
  remove_temporaries(dst);
  const std::string plan_path = join(dst, kDequantPlanFileName);
  nlohmann::json manifest = plan.manifest;
  manifest["complete"] = false;
  io::write_file_atomic(plan_path, manifest.dump(2) + "\n");

  const std::optional<unsigned> crash_after = crash_after_shards();
  ShardStreamer streamer(plan, options, report, progress, plan.input_bytes());
  for (const io::PlannedShard& shard : plan.shards) {
    const std::string path = join(dst, shard.file);
    if (destination != Destination::Empty && shard_is_finished(path, plan, shard)) {
      ++report.shards_skipped;
      streamer.skip(shard);
      continue;
    }
    streamer.write(shard, path);
    ++report.shards_written;
    if (crash_after && report.shards_written == *crash_after) ::_exit(137);
  }

  // Last: the other files, the config, the index, then the plan marked complete.
  for (const std::string& rel : plan.extra_files) {
    const fs::path to = fs::path(dst) / rel;
    fs::create_directories(to.parent_path(), ec);
    if (ec) throw Error(to.parent_path().string() + ": cannot create the directory: " + ec.message());
    copy_file_atomically(join(src, rel), to.string());
    ++report.files_copied;
  }
  if (plan.config_text) {
    io::write_file_atomic(join(dst, kConfigFileName), *plan.config_text);
    report.config_written = true;
  }
  plan.index().save(join(dst, io::kIndexFileName));
  manifest["complete"] = true;
  io::write_file_atomic(plan_path, manifest.dump(2) + "\n");
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

}  // namespace fp4kit
