#include "convert/convert.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/parallel.h"
#include "convert/modelopt_mxfp4_dequant.h"
#include "convert/modelopt_v4_layout.h"
#include "convert/nvfp4_quantizer.h"
#include "convert/output_directory.h"
#include "convert/source_checkpoint.h"
#include "formats/e8m0.h"
#include "formats/nvfp4.h"
#include "io/atomic_file.h"
#include "io/quote_name.h"
#include "io/safetensors_writer.h"

namespace fp4kit {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kConfigFileName = "config.json";
// Every output shard carries the same metadata, so a shard's bytes depend on its tensors alone.
const std::map<std::string, std::string> kShardMetadata = {{"format", "pt"}};
constexpr uint64_t kCopyChunkBytes = 64ull << 20;
constexpr uint64_t kPieceBytes = 1ull << 20;

using Clock = std::chrono::steady_clock;

std::vector<std::byte> f32_bytes(float v) {
  std::vector<std::byte> out(4);
  std::memcpy(out.data(), &v, 4);
  return out;
}

// One expert matrix's source data, checked for values that are not finite.
struct ExpertSource {
  std::vector<uint8_t> packed, scales;  // MXFP4
  std::vector<std::byte> plain;         // BF16/F16/F32
};

// The NVFP4 tensors of one module.
struct ExpertResult {
  size_t module = ExpertModule::kNone;
  std::vector<uint8_t> packed, scales;
  float weight_scale_2 = 0;
};

// What the w1/w3 pair of a module shares: weight_scale_2, and for the cast the k_max it came from.
struct SharedScale {
  float weight_scale_2 = 0;
  int k_max = 0;
};

class ExpertConverter {
 public:
  ExpertConverter(const ConvertPlan& plan, const ConvertOptions& options) : plan_(plan), options_(options) {}

  // The result for module `i`, computed once per module visit (a module's output tensors are
  // adjacent in a shard's sorted layout, so each is computed once).
  const ExpertResult& result(size_t i, Mxfp4CastStats& cast_stats) {
    if (current_.module == i) return current_;
    current_ = ExpertResult{};
    const ExpertModule& m = plan_.modules[i];
    const ExpertSource src = load(m);
    const size_t n = static_cast<size_t>(m.rows) * static_cast<size_t>(m.cols);
    current_.packed.resize(n / 2);
    current_.scales.resize(n / kNvfp4BlockSize);
    if (m.action == ConvertAction::Transcode) {
      const SharedScale shared = shared_scale(i, &src);
      current_.weight_scale_2 = shared.weight_scale_2;
      // Whole tensor at once: the block-scale window depends on the tensor's own k_max.
      cast_stats += mxfp4_to_nvfp4_cast(src.packed.data(), src.scales.data(), n, shared.weight_scale_2, shared.k_max,
                                        current_.packed.data(), current_.scales.data());
    } else {
      std::vector<uint16_t> bf16;
      const FloatSpan values = float_values(m, src, bf16);
      current_.weight_scale_2 = shared_scale(i, &src).weight_scale_2;
      const Nvfp4Scaling scaling{Nvfp4Numerics::ModelOpt, current_.weight_scale_2, values.dtype};
      Nvfp4Tensor q = quantize_nvfp4(values, scaling, options_.threads);
      current_.packed = std::move(q.packed);
      current_.scales = std::move(q.scales);
    }
    current_.module = i;
    return current_;
  }

 private:
  ExpertSource load(const ExpertModule& m) const {
    ExpertSource s;
    if (m.storage == Storage::Mxfp4) {
      s.packed.resize(m.weight.info->nbytes());
      s.scales.resize(m.scale.info->nbytes());
      m.weight.file->read(*m.weight.info, std::as_writable_bytes(std::span(s.packed)));
      m.scale.file->read(*m.scale.info, std::as_writable_bytes(std::span(s.scales)));
      const auto nan = std::find(s.scales.begin(), s.scales.end(), uint8_t{0xFF});
      if (nan != s.scales.end() && !options_.allow_nonfinite) {
        const size_t at = static_cast<size_t>(nan - s.scales.begin());
        const size_t groups = static_cast<size_t>(m.cols) / kMxfp4BlockSize;
        throw InputError(m.scale.file->path() + ": tensor " + io::quote_name(m.scale.info->name) +
                         ": E8M0 byte 0xFF (NaN) at [" + std::to_string(at / groups) + ", " +
                         std::to_string(at % groups) + "], so expert " + io::quote_name(m.name) +
                         " has NaN values; --allow-nonfinite converts it anyway");
      }
    } else {
      s.plain.resize(m.weight.info->nbytes());
      m.weight.file->read(*m.weight.info, s.plain);
      const FloatSpan values{s.plain.data(), m.weight.info->dtype, static_cast<size_t>(m.rows * m.cols)};
      if (!options_.allow_nonfinite && !std::isfinite(parallel_amax(values, options_.threads)))
        throw InputError(m.weight.file->path() + ": tensor " + io::quote_name(m.weight.info->name) +
                         ": holds NaN or infinite values; --allow-nonfinite converts it anyway");
    }
    return s;
  }

  // The values NVFP4 is quantized from: the source matrix, or ModelOpt's BF16 dequant of MXFP4.
  FloatSpan float_values(const ExpertModule& m, const ExpertSource& s, std::vector<uint16_t>& bf16) const {
    const size_t n = static_cast<size_t>(m.rows) * static_cast<size_t>(m.cols);
    if (m.storage != Storage::Mxfp4) return FloatSpan{s.plain.data(), m.weight.info->dtype, n};
    bf16.resize(n);
    const size_t cols = static_cast<size_t>(m.cols);
    const size_t piece = std::max<size_t>(1, kPieceBytes / (2 * cols));
    parallel_for(static_cast<size_t>(m.rows), piece, options_.threads, [&](size_t a, size_t b) {
      modelopt_mxfp4_dequantize_bf16(s.packed.data() + a * cols / 2, s.scales.data() + a * cols / kMxfp4BlockSize,
                                     (b - a) * cols, bf16.data() + a * cols);
    });
    return FloatSpan{bf16.data(), DType::BF16, n};
  }

  // What a module contributes to its pair's scale: its amax (quantize) or its largest nonzero
  // E8M0 exponent (cast; INT_MIN when every byte is 0).
  float module_amax(const ExpertModule& m, const ExpertSource& s) const {
    std::vector<uint16_t> bf16;
    return parallel_amax(float_values(m, s, bf16), options_.threads);
  }
  static int module_k_max(const ExpertSource& s) {
    return mxfp4_max_exponent(s.scales.data(), s.scales.size(), INT_MIN);
  }

  // weight_scale_2 of module i's pair, from both halves wherever they are stored. Cached, so the
  // second half of a pair reuses it; `own` is module i's data when the caller has it loaded.
  SharedScale shared_scale(size_t i, const ExpertSource* own) {
    if (const auto it = shared_.find(i); it != shared_.end()) return it->second;
    const ExpertModule& m = plan_.modules[i];
    std::vector<size_t> members = {i};
    if (m.partner != ExpertModule::kNone) members.push_back(m.partner);
    SharedScale shared;
    if (m.action == ConvertAction::Transcode) {
      int k_max = INT_MIN;
      for (size_t j : members) k_max = std::max(k_max, module_k_max(j == i && own ? *own : load(plan_.modules[j])));
      shared.k_max = k_max == INT_MIN ? -E8M0::kBias : k_max;
      shared.weight_scale_2 = mxfp4_cast_weight_scale_2(shared.k_max);
    } else {
      float amax = 0;
      for (size_t j : members) {
        const float a = module_amax(plan_.modules[j], j == i && own ? *own : load(plan_.modules[j]));
        amax = std::isnan(a) || std::isnan(amax) ? NAN : std::max(amax, a);
      }
      shared.weight_scale_2 = nvfp4_global_scale(amax, Nvfp4Numerics::ModelOpt, DType::BF16);
    }
    for (size_t j : members) shared_[j] = shared;
    return shared;
  }

  const ConvertPlan& plan_;
  const ConvertOptions& options_;
  ExpertResult current_;
  std::unordered_map<size_t, SharedScale> shared_;  // one float pair per module seen: small
};

class ShardConverter {
 public:
  ShardConverter(const ConvertPlan& plan, const ConvertOptions& options, ConvertReport& report,
                 const ConvertProgressFn& progress)
      : plan_(plan), options_(options), report_(report), progress_(progress), experts_(plan, options),
        total_(plan.input_bytes()) {}

  void skip(const io::PlannedShard& shard) {
    for (size_t i : shard.tensors) done_ += source_bytes(plan_.tensors[i]);
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
    for (const io::TensorInfo& out : writer.layout()) emit(plan_.tensors[by_name.at(out.name)], writer);
    writer.commit();
    drop_written_pages(path);
    for (size_t i : shard.tensors) report_.output_bytes += plan_.tensors[i].output.nbytes();
  }

 private:
  // Source bytes a tensor stands for, for progress: a copied tensor's, or a module's weight and
  // scale (counted with its NVFP4 weight).
  uint64_t source_bytes(const ConvertTensor& t) const {
    if (t.kind == ConvertOutput::Copy) return t.source.info->nbytes();
    if (t.kind == ConvertOutput::Weight) return plan_.modules[t.module].input_bytes();
    return 0;
  }

  void emit(const ConvertTensor& t, io::SafetensorsWriter& writer) {
    const auto start = Clock::now();
    ConvertActionStats* stats = &report_.keep;
    if (t.kind == ConvertOutput::Copy) {
      copy(t, writer);
      ++stats->tensors_written;
      stats->input_bytes += t.source.info->nbytes();
    } else {
      const ExpertModule& m = plan_.modules[t.module];
      stats = &report_.stats(m.action);
      const ExpertResult& r = experts_.result(t.module, report_.cast);
      switch (t.kind) {
        case ConvertOutput::Weight:
          writer.write(t.output.name, std::as_bytes(std::span(r.packed)));
          ++stats->tensors_written;
          stats->input_bytes += m.input_bytes();
          break;
        case ConvertOutput::BlockScale: writer.write(t.output.name, std::as_bytes(std::span(r.scales))); break;
        case ConvertOutput::GlobalScale: writer.write(t.output.name, f32_bytes(r.weight_scale_2)); break;
        case ConvertOutput::InputScale:
          // f32(amax / 2688), a true f32 division as the exporter does on the CPU.
          writer.write(t.output.name, f32_bytes(*m.input_amax / kNvfp4ScaleDenominator));
          break;
        case ConvertOutput::Copy: break;
      }
    }
    stats->output_bytes += t.output.nbytes();
    stats->seconds += std::chrono::duration<double>(Clock::now() - start).count();
    const uint64_t in = source_bytes(t);
    report_.input_bytes += in;
    done_ += in;
    report_progress();
  }

  void copy(const ConvertTensor& t, io::SafetensorsWriter& writer) {
    const io::TensorInfo& src = *t.source.info;
    t.source.file->advise_sequential(src);
    const uint64_t total = src.nbytes();
    for (uint64_t offset = 0; offset < total;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kCopyChunkBytes, total - offset));
      buffer_.resize(n);
      parallel_for(n, kPieceBytes, options_.threads, [&](size_t a, size_t b) {
        t.source.file->read_range(src, offset + a, std::span(buffer_).subspan(a, b - a));
      });
      writer.append(std::span(buffer_).first(n));
      offset += n;
    }
    t.source.file->drop_cache(src);
  }

  void report_progress() const {
    if (progress_) progress_(std::min(done_, total_), total_);
  }

  const ConvertPlan& plan_;
  const ConvertOptions& options_;
  ConvertReport& report_;
  const ConvertProgressFn& progress_;
  ExpertConverter experts_;
  const uint64_t total_;
  uint64_t done_ = 0;
  std::vector<std::byte> buffer_;
};

// --force: the destination's entries go, after the checks that it is not the source or above it.
void empty_destination(const std::string& src, const std::string& dst) {
  std::error_code ec;
  if (!fs::exists(dst, ec)) return;
  if (!fs::is_directory(dst, ec)) throw InputError(dst + ": exists and is not a directory");
  const fs::path s = fs::weakly_canonical(src, ec), d = fs::weakly_canonical(dst, ec);
  const auto rel = s.lexically_relative(d);
  if (!rel.empty() && *rel.begin() != "..")
    throw InputError(dst + ": holds the source checkpoint; --force will not empty it");
  for (const auto& entry : fs::directory_iterator(dst, ec)) {
    fs::remove_all(entry.path(), ec);
    if (ec) throw Error(entry.path().string() + ": cannot remove (--force): " + ec.message());
  }
  if (ec) throw Error(dst + ": cannot empty the directory (--force): " + ec.message());
}

}  // namespace

const ConvertActionStats& ConvertReport::stats(ConvertAction a) const {
  switch (a) {
    case ConvertAction::Quantize: return quantize;
    case ConvertAction::Transcode: return transcode;
    case ConvertAction::Keep:
    case ConvertAction::Drop: break;
  }
  return keep;
}

ConvertActionStats& ConvertReport::stats(ConvertAction a) {
  return const_cast<ConvertActionStats&>(std::as_const(*this).stats(a));
}

ConvertReport convert_checkpoint(const ConvertPlan& plan, const std::string& dst, const ConvertOptions& options,
                                 const ConvertProgressFn& progress) {
  const auto start = Clock::now();
  std::error_code ec;
  if (fs::exists(dst, ec) && fs::equivalent(plan.src_dir, dst, ec))
    throw InputError(dst + ": is the source directory; the output needs a directory of its own");
  if (options.force && !options.resume) empty_destination(plan.src_dir, dst);
  const Destination destination = inspect_destination(dst, convert_plan_file(), plan.manifest, options.resume);

  ConvertReport report;
  report.shards = plan.shards.size();
  prepare_destination(dst, convert_plan_file(), plan.manifest);

  const std::optional<unsigned> crash_after = crash_after_shards();
  ShardConverter converter(plan, options, report, progress);
  for (const io::PlannedShard& shard : plan.shards) {
    const std::string path = join_path(dst, shard.file);
    std::vector<const io::TensorInfo*> outputs;
    for (size_t i : shard.tensors) outputs.push_back(&plan.tensors[i].output);
    if (destination != Destination::Empty && shard_is_finished(path, outputs, kShardMetadata)) {
      ++report.shards_skipped;
      converter.skip(shard);
      continue;
    }
    converter.write(shard, path);
    ++report.shards_written;
    if (crash_after && report.shards_written == *crash_after) ::_exit(137);
  }

  // Last: the other files, the JSON files, the index, then the plan marked complete.
  for (const std::string& rel : plan.extra_files) {
    const fs::path to = fs::path(dst) / rel;
    fs::create_directories(to.parent_path(), ec);
    if (ec) throw Error(to.parent_path().string() + ": cannot create the directory: " + ec.message());
    copy_file_atomically(join_path(plan.src_dir, rel), to.string());
    ++report.files_copied;
  }
  if (plan.config_text) io::write_file_atomic(join_path(dst, kConfigFileName), *plan.config_text);
  io::write_file_atomic(join_path(dst, kHfQuantConfigFileName), plan.hf_quant_config_text);
  plan.index().save(join_path(dst, io::kIndexFileName));
  finish_destination(dst, convert_plan_file(), plan.manifest);
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

}  // namespace fp4kit
