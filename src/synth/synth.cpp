#include "synth/synth.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#include "base/peak_rss.h"
#include "io/atomic_file.h"
#include "io/checkpoint_index.h"
#include "io/safetensors_writer.h"
#include "io/shard_plan.h"
#include "synth/weight_generator.h"

namespace fp4kit::synth {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kChunkBytes = uint64_t{64} << 20;  // plain tensors are written in row chunks of about this

void prepare_destination(const std::string& dst) {
  std::error_code ec;
  const fs::file_status status = fs::status(dst, ec);
  if (fs::exists(status)) {
    if (!fs::is_directory(status)) throw InputError(dst + ": exists and is not a directory");
    if (!fs::is_empty(dst, ec) || ec)
      throw InputError(dst + ": directory is not empty (synth writes only into a new or empty directory)");
    return;
  }
  fs::create_directories(dst, ec);
  if (ec) throw Error(dst + ": cannot create the directory: " + ec.message());
}

std::string module_of(const TensorSpec& s) {
  const std::string_view suffix = s.is_scale ? ".scale" : ".weight";
  return s.name.substr(0, s.name.size() - suffix.size());
}

// Writes the data of the shards tensor by tensor. A quantized weight and its scale are generated
// together and kept until both are written; they may sit in different shards. Writing a chunk
// overlaps with generating the next one (one write in flight, so the order stays the layout's).
class ShardFiller {
 public:
  ShardFiller(const std::vector<TensorSpec>& specs, const WeightGenerator& generator, const SynthProgress& progress,
              uint64_t total)
      : specs_(specs), generator_(generator), progress_(progress), total_(total) {
    for (size_t i = 0; i < specs.size(); ++i) index_of_.emplace(specs[i].name, i);
  }
  ~ShardFiller() {
    if (write_.valid()) write_.wait();
  }

  // Every tensor of the shard; the data is all written when this returns.
  void fill(io::SafetensorsWriter& writer) {
    for (const io::TensorInfo& t : writer.layout()) {
      const TensorSpec& spec = specs_[index_of_.at(t.name)];
      if (spec.storage == Storage::Plain) write_plain(writer, spec, t.nbytes());
      else write_quantized(writer, spec);
    }
    finish_write();
  }

 private:
  // Waits for the write in flight (rethrowing its error) and keeps its buffer for the next chunk.
  void finish_write() {
    if (!write_.valid()) return;
    std::vector<std::byte> written = write_.get();
    if (written.size() > spare_.size()) spare_ = std::move(written);
  }

  // Hands `bytes[0, size)` to the writer; `bytes` is the writer's until the next append, and comes
  // back as the spare buffer if `reuse`.
  void append(io::SafetensorsWriter& writer, std::vector<std::byte>&& bytes, size_t size, bool reuse) {
    finish_write();
    done_ += size;
    write_ = std::async(std::launch::async, [&writer, data = std::move(bytes), size, reuse]() mutable {
      writer.append(std::span(data.data(), size));
      return reuse ? std::move(data) : std::vector<std::byte>{};
    });
    if (progress_) progress_(done_, total_);
  }

  void write_plain(io::SafetensorsWriter& writer, const TensorSpec& spec, uint64_t nbytes) {
    const int64_t rows = spec.shape.empty() ? 1 : spec.shape[0];
    if (rows == 0 || nbytes == 0) return;
    const uint64_t row_bytes = nbytes / static_cast<uint64_t>(rows);
    const auto chunk_rows = static_cast<int64_t>(std::max<uint64_t>(1, kChunkBytes / std::max<uint64_t>(row_bytes, 1)));
    for (int64_t r = 0; r < rows; r += chunk_rows) {
      const int64_t end = std::min(rows, r + chunk_rows);
      const auto size = static_cast<size_t>(end - r) * row_bytes;
      // Chunks alternate between two buffers: fresh 64 MB ones would be faulted in and zeroed each time.
      std::vector<std::byte> chunk = std::move(spare_);
      if (chunk.size() < size) chunk.resize(size);
      generator_.plain_rows(spec, r, end, std::span(chunk.data(), size));
      append(writer, std::move(chunk), size, /*reuse=*/true);
    }
  }

  void write_quantized(io::SafetensorsWriter& writer, const TensorSpec& spec) {
    const std::string module = module_of(spec);
    auto it = pending_.find(module);
    if (it == pending_.end()) {
      const TensorSpec& weight = specs_[index_of_.at(module + ".weight")];
      const TensorSpec& scale = specs_[index_of_.at(module + ".scale")];
      it = pending_.emplace(module, Pending{generator_.quantized(weight, scale), 2}).first;
    }
    Pending& p = it->second;
    std::vector<std::byte>& bytes = spec.is_scale ? p.q.scale : p.q.weight;
    const size_t size = bytes.size();
    append(writer, std::move(bytes), size, /*reuse=*/false);
    if (--p.members_left == 0) pending_.erase(it);
  }

  struct Pending {
    QuantizedWeight q;
    int members_left;  // of the weight and its scale, those not written yet
  };

  const std::vector<TensorSpec>& specs_;
  const WeightGenerator& generator_;
  const SynthProgress& progress_;
  uint64_t total_, done_ = 0;
  std::unordered_map<std::string, size_t> index_of_;
  std::unordered_map<std::string, Pending> pending_;
  std::future<std::vector<std::byte>> write_;
  std::vector<std::byte> spare_;
};

void add_file_sizes(const std::string& path, SynthReport& report) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) throw Error(path + ": cannot stat the file just written");
  report.file_bytes += static_cast<uint64_t>(st.st_size);
  report.allocated_bytes += static_cast<uint64_t>(st.st_blocks) * 512;
}

}  // namespace

DeepseekV4Config synth_config(std::string_view preset, std::string_view expert_dtype) {
  std::optional<DeepseekV4Config> config = deepseek_v4_preset(preset);
  if (!config) {
    std::string known;
    for (const auto& name : deepseek_v4_preset_names()) known += (known.empty() ? "" : ", ") + name;
    throw InputError("unknown preset '" + std::string(preset) + "' (known: " + known +
                     "; override dimensions as in v4-pro:layers=1,experts=384)");
  }
  if (expert_dtype != "fp4" && expert_dtype != "fp8")
    throw InputError("expert dtype must be fp4 or fp8, got '" + std::string(expert_dtype) + "'");
  config->expert_dtype = std::string(expert_dtype);
  return *config;
}

SynthReport synthesize_checkpoint(const DeepseekV4Config& config, const std::string& dst, const SynthOptions& options,
                                  const SynthProgress& progress) {
  const auto start = std::chrono::steady_clock::now();
  if (options.shard_bytes == 0) throw InputError("shard size must be positive");
  const std::vector<TensorSpec> specs = deepseek_v4_tensors(config);
  std::vector<io::TensorInfo> infos;
  infos.reserve(specs.size());
  for (const TensorSpec& s : specs) {
    const io::StorageSize size = io::storage_size(s.dtype, s.shape);
    if (!size.problem.empty()) throw InputError("tensor '" + s.name + "': " + size.problem);
    infos.push_back(io::TensorInfo{s.name, s.dtype, s.shape, 0, size.nbytes});
  }
  const std::vector<io::PlannedShard> shards = io::plan_shards(infos, options.shard_bytes);
  const io::CheckpointIndex index = io::index_for(shards, infos);

  prepare_destination(dst);
  SynthReport report;
  report.dst = dst;
  report.tensors = specs.size();
  report.shards = shards.size();
  for (const auto& s : shards) report.data_bytes += s.bytes;

  const std::string config_path = (fs::path(dst) / "config.json").string();
  io::write_file_atomic(config_path, config.to_json().dump(2) + "\n");
  add_file_sizes(config_path, report);

  std::map<std::string, std::string> metadata = {{"format", "pt"}};
  if (options.hollow) metadata[kHollowMetadataKey] = "true";
  const WeightGenerator generator(config, options.seed, std::max(options.threads, 1u));
  ShardFiller filler(specs, generator, progress, report.data_bytes);
  uint64_t hollow_done = 0;
  for (const io::PlannedShard& shard : shards) {
    const std::string path = (fs::path(dst) / shard.file).string();
    io::SafetensorsWriter writer(path);
    writer.set_metadata(metadata);
    for (size_t i : shard.tensors) writer.declare(infos[i].name, infos[i].dtype, infos[i].shape);
    writer.begin();
    if (options.hollow) {
      writer.append_hole(shard.bytes);
      hollow_done += shard.bytes;
      if (progress) progress(hollow_done, report.data_bytes);
    } else {
      filler.fill(writer);
    }
    writer.commit();
    add_file_sizes(path, report);
  }

  // The index last: a directory with an index is a complete checkpoint.
  const std::string index_path = (fs::path(dst) / io::kIndexFileName).string();
  index.save(index_path);
  add_file_sizes(index_path, report);

  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.peak_rss_bytes = peak_rss_bytes();
  return report;
}

}  // namespace fp4kit::synth
