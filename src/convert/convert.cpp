#include "convert/convert.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/parallel.h"
#include "convert/background_writer.h"
#include "convert/fp8_block_rows.h"
#include "convert/gptq_gpu.h"
#include "convert/hessian_statistics.h"
#include "convert/shard_data_stream.h"
#include "convert/shard_hash.h"
#include "convert/sharded_job.h"
#include "convert/modelopt_v4_layout.h"
#include "convert/nvfp4_quantizer.h"
#include "convert/output_directory.h"
#include "convert/range_copy.h"
#include "convert/source_checkpoint.h"
#include "formats/bf16.h"
#include "formats/e8m0.h"
#include "formats/fp8_block.h"
#include "formats/mxfp4_cast.h"
#include "formats/nvfp4.h"
#include "io/checkpoint_index.h"
#include "io/quote_name.h"
#include "io/safetensors_writer.h"

namespace fp4kit {

namespace fs = std::filesystem;

namespace {

// Every output shard carries the same metadata, so a shard's bytes depend on its tensors alone.
const std::map<std::string, std::string> kShardMetadata = {{"format", "pt"}};
// Kept tensors move in 8 MB chunks: small enough for malloc to reuse freed ones instead of mapping
// (and page-faulting) fresh memory for each (Pro-shaped requantization: 3.8 instead of 6.7 s of
// kernel time).
constexpr uint64_t kCopyChunkBytes = 8ull << 20;
constexpr uint64_t kQueuedBytes = 128ull << 20;  // written-behind data at most (plus one buffer)
constexpr uint64_t kPieceBytes = 1ull << 20;

using Clock = std::chrono::steady_clock;

std::vector<std::byte> f32_bytes(float v) {
  std::vector<std::byte> out(4);
  std::memcpy(out.data(), &v, 4);
  return out;
}

// One module's source data as stored.
struct ModuleSource {
  std::vector<uint8_t> weight, scales;  // MXFP4 (packed, E8M0) or FP8 blocks (E4M3, E8M0/F32 scales)
  std::vector<std::byte> plain;         // BF16/F16/F32
};

// What NVFP4 is quantized from: the source values (plain), their dequant to BF16 (MXFP4, FP8
// blocks with E8M0 scales) or to F32 (FP8 blocks with F32 scales), and their amax.
struct ModuleValues {
  ModuleSource source;
  std::vector<uint16_t> bf16;
  std::vector<float> f32;
  DType dtype = DType::BF16;
  float amax = 0;
  FloatSpan span() const {
    if (!source.plain.empty()) return FloatSpan{source.plain.data(), dtype, source.plain.size() / (dtype_bits(dtype) / 8)};
    if (!f32.empty()) return FloatSpan{f32.data(), DType::F32, f32.size()};
    return FloatSpan{bf16.data(), DType::BF16, bf16.size()};
  }
};

// The NVFP4 tensors of one module.
struct ModuleResult {
  size_t module = Nvfp4Module::kNone;
  std::vector<uint8_t> packed, scales;
  float global = 0;  // weight_scale_2 (ModelOpt) or weight_global_scale (compressed-tensors)
};

// What the w1/w3 pair of a module shares: the global scale and the amax it came from (requantized),
// or the k_max it came from (the cast).
struct SharedScale {
  float global = 0;
  float amax = 0;
  int k_max = 0;
};

size_t rows_per_piece(int64_t cols, size_t bytes_per_element_x2) {
  return std::max<size_t>(1, kPieceBytes * 2 / (static_cast<size_t>(cols) * bytes_per_element_x2));
}

class ModuleConverter {
 public:
  ModuleConverter(const ConvertPlan& plan, const ConvertOptions& options) : plan_(plan), options_(options) {}

  // The result for module `i`, computed once per module visit (a module's output tensors are
  // adjacent in a shard's sorted layout, so each is computed once).
  const ModuleResult& result(size_t i, Mxfp4CastStats& cast_stats, Nvfp4HessianStats& hessian_stats,
                             ConvertGptqStats& gptq_stats) {
    if (current_.module == i) return current_;
    current_ = ModuleResult{};
    const Nvfp4Module& m = plan_.modules[i];
    const size_t n = static_cast<size_t>(m.rows) * static_cast<size_t>(m.cols);
    current_.packed.resize(n / 2);
    current_.scales.resize(n / kNvfp4BlockSize);
    if (m.action == ConvertAction::Transcode) {
      const ModuleSource src = load(m, true);
      const SharedScale shared = shared_scale(i, &src, nullptr);
      const Mxfp4CastParams params = mxfp4_cast_params(src.scales.data(), src.scales.size(), shared.k_max);
      current_.global = plan_.format == ConvertFormat::CompressedTensors ? 1.0f / params.weight_scale_2
                                                                          : params.weight_scale_2;
      cast_stats += cast(m, src, params);
    } else {
      ModuleValues values = take_or_prepare(i);
      const SharedScale shared = shared_scale(i, nullptr, &values);
      current_.global = shared.global;
      // The full XᵀX (GPTQ, and hessian scales from a full statistics directory), read once.
      int64_t xtx_groups = 1;
      std::vector<double> xtx;
      if (m.full_xtx)
        xtx = plan_.full_statistics->read(m.name, m.weight.info->name, m.rows, m.cols, xtx_groups);
      Nvfp4Tensor q;
      if (plan_.scales == Nvfp4ScaleMethod::Hessian && m.full_xtx) {
        const std::vector<HessianBlockWeight> weights =
            hessian_weights_from_full(xtx, xtx_groups, m.cols, plan_.hessian_damping);
        q = quantize_nvfp4_hessian(
            values.span(), weights,
            HessianLayout{static_cast<size_t>(m.cols) / kNvfp4BlockSize, static_cast<size_t>(m.rows / xtx_groups)},
            nvfp4_search_scaling(shared.amax, plan_.scales, plan_.quantizer, values.span().dtype), options_.threads,
            hessian_stats);
      } else if (plan_.scales == Nvfp4ScaleMethod::Max) {
        q = quantize_nvfp4(values.span(), Nvfp4Scaling{plan_.quantizer, current_.global, values.span().dtype},
                           options_.threads);
      } else if (plan_.scales == Nvfp4ScaleMethod::Hessian && !m.xtx_blocks.info) {
        // --hessian-missing mse: a weight without statistics.
        // --hessian-missing mse: a weight without statistics.
        q = quantize_nvfp4_searched(
            values.span(),
            nvfp4_search_scaling(shared.amax, Nvfp4ScaleMethod::Mse, plan_.quantizer, values.span().dtype),
            options_.threads);
      } else if (plan_.scales == Nvfp4ScaleMethod::Hessian) {
        const std::vector<HessianBlockWeight> weights =
            read_hessian_weights(*m.xtx_blocks.file, *m.xtx_blocks.info, plan_.hessian_damping);
        // Grouped linears (wo_a) have statistics over every group's input channels.
        const size_t blocks_per_row = static_cast<size_t>(m.cols) / kNvfp4BlockSize;
        const size_t groups = weights.size() / blocks_per_row;
        q = quantize_nvfp4_hessian(
            values.span(), weights, HessianLayout{blocks_per_row, static_cast<size_t>(m.rows) / groups},
            nvfp4_search_scaling(shared.amax, plan_.scales, plan_.quantizer, values.span().dtype), options_.threads,
            hessian_stats);
      } else {
        q = quantize_nvfp4_searched(
            values.span(), nvfp4_search_scaling(shared.amax, plan_.scales, plan_.quantizer, values.span().dtype),
            options_.threads);
      }
      if (plan_.gptq && m.full_xtx)
        compensate(m, values.span(), xtx, xtx_groups, Nvfp4Scaling{plan_.quantizer, q.global, values.span().dtype}, q,
                   gptq_stats);
      current_.packed = std::move(q.packed);
      current_.scales = std::move(q.scales);
    }
    current_.module = i;
    return current_;
  }

 private:
  // GPTQ on the codes of q, its block scales kept: each row group with its own XᵀX. On the CPU the
  // rows go in fixed pieces on the worker threads (every row's arithmetic is its own, so the bytes do
  // not depend on the thread count); with gptq_device cuda a group's factor and rows go to the GPU
  // (convert/gptq_gpu.h), with the same decisions and counts.
  void compensate(const Nvfp4Module& m, FloatSpan src, const std::vector<double>& xtx, int64_t groups,
                  const Nvfp4Scaling& scaling, Nvfp4Tensor& q, ConvertGptqStats& stats) {
    const auto t0 = std::chrono::steady_clock::now();
    const size_t k = static_cast<size_t>(m.cols), rows_per_group = static_cast<size_t>(m.rows / groups);
    const bool gpu = options_.gptq_device == cuda::Device::Cuda;
    if (gpu && !gpu_) gpu_ = std::make_unique<GptqGpu>();
    ++stats.tensors;
    for (size_t g = 0; g < static_cast<size_t>(groups); ++g) {
      const std::vector<double> h(xtx.begin() + static_cast<std::ptrdiff_t>(g * k * k),
                                  xtx.begin() + static_cast<std::ptrdiff_t>((g + 1) * k * k));
      const GptqFactor factor = gpu ? gpu_->factor(h, k, plan_.gptq_options)
                                    : gptq_factor(h, k, plan_.gptq_options, options_.threads);
      ++stats.matrices;
      if (!factor.usable) {
        ++stats.rtn_matrices;
        stats.fallbacks.push_back(m.name + (groups > 1 ? " group " + std::to_string(g) : "") + ": XᵀX holds " +
                                  factor.why);
        continue;  // q already holds the plain rounding
      }
      stats.damped_more += factor.damping != plan_.gptq_options.damping;
      if (gpu) {
        const size_t r0 = g * rows_per_group;
        const GptqRowStats s = gpu_->quantize_rows(src.subspan(r0 * k, rows_per_group * k), k,
                                                   q.scales.data() + r0 * k / kNvfp4BlockSize, scaling, factor,
                                                   plan_.gptq_options.block, q.packed.data() + r0 * k / 2);
        stats.rows += s.rows;
        stats.skipped_rows += s.skipped_rows;
        continue;
      }
      std::mutex mutex;
      parallel_for(rows_per_group, kGptqRowsPerPiece, options_.threads, [&](size_t a, size_t b) {
        const size_t r0 = g * rows_per_group + a;
        const GptqRowStats s = nvfp4_gptq_quantize_rows(src.subspan(r0 * k, (b - a) * k), k,
                                                        q.scales.data() + r0 * k / kNvfp4BlockSize, scaling, factor,
                                                        plan_.gptq_options.block, q.packed.data() + r0 * k / 2);
        std::lock_guard lock(mutex);
        stats.rows += s.rows;
        stats.skipped_rows += s.skipped_rows;
      });
    }
    stats.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  // Rows cut into fixed pieces on the worker threads; every piece uses the tensor's constants, so
  // the bytes do not depend on the thread count.
  Mxfp4CastStats cast(const Nvfp4Module& m, const ModuleSource& src, const Mxfp4CastParams& params) {
    const Mxfp4CastTable table(src.scales.data(), src.scales.size(), params);
    const Mxfp4CastKernel kernel = mxfp4_cast_kernel();
    const size_t cols = static_cast<size_t>(m.cols);
    std::mutex mutex;
    Mxfp4CastStats total;
    parallel_for(static_cast<size_t>(m.rows), rows_per_piece(m.cols, 1), options_.threads, [&](size_t a, size_t b) {
      const Mxfp4CastStats s =
          kernel(src.weight.data() + a * cols / 2, src.scales.data() + a * cols / kMxfp4BlockSize, (b - a) * cols, table,
                 current_.packed.data() + a * cols / 2, current_.scales.data() + a * cols / kNvfp4BlockSize);
      std::lock_guard lock(mutex);
      total += s;
    });
    return total;
  }

  // A tensor's bytes in 1 MB pieces on the worker threads: several reads in flight keep the disk
  // busy where one synchronous read of a cold tensor would wait on each readahead window in turn.
  void read_tensor(const SourceTensor& t, std::span<std::byte> dst) const {
    t.file->advise_sequential(*t.info);
    parallel_for(dst.size(), kPieceBytes, options_.threads,
                 [&](size_t a, size_t b) { t.file->read_range(*t.info, a, dst.subspan(a, b - a)); });
    t.file->drop_cache(*t.info);
  }

  // The weight (unless scales_only) and scale of a module, with the checks that need its data.
  ModuleSource load(const Nvfp4Module& m, bool with_weight) const {
    ModuleSource s;
    if (m.storage == Storage::Plain) {
      s.plain.resize(m.weight.info->nbytes());
      read_tensor(m.weight, s.plain);
      return s;
    }
    s.scales.resize(m.scale.info->nbytes());
    m.scale.file->read(*m.scale.info, std::as_writable_bytes(std::span(s.scales)));
    if (with_weight) {
      s.weight.resize(m.weight.info->nbytes());
      read_tensor(m.weight, std::as_writable_bytes(std::span(s.weight)));
    }
    if (m.storage == Storage::Mxfp4 || m.storage == Storage::Fp8BlockE8M0) {
      const auto nan = std::find(s.scales.begin(), s.scales.end(), uint8_t{0xFF});
      if (nan != s.scales.end() && !options_.allow_nonfinite) {
        const size_t at = static_cast<size_t>(nan - s.scales.begin());
        const size_t per_row = static_cast<size_t>(m.scale.info->shape.back());
        throw InputError(m.scale.file->path() + ": tensor " + io::quote_name(m.scale.info->name) +
                         ": E8M0 byte 0xFF (NaN) at [" + std::to_string(at / per_row) + ", " +
                         std::to_string(at % per_row) + "], so " + io::quote_name(m.weight.info->name) +
                         " has NaN values; --allow-nonfinite converts it anyway");
      }
    }
    return s;
  }

  // Source, values and amax of module i; refuses NaN or infinite values unless allow_nonfinite.
  ModuleValues prepare(size_t i) const {
    const Nvfp4Module& m = plan_.modules[i];
    ModuleValues v;
    v.source = load(m, true);
    const size_t rows = static_cast<size_t>(m.rows), cols = static_cast<size_t>(m.cols);
    if (m.storage == Storage::Plain) {
      v.dtype = m.weight.info->dtype;
    } else if (m.storage == Storage::Mxfp4) {
      // DeepSeek's dequant decodes code 0x8 as +0.0 where ModelOpt's gives -0.0: the NVFP4 bytes
      // are the same (|-0| = 0 for the amax; E2M1 of either zero is code 0), so the fast kernel serves.
      v.bf16.resize(rows * cols);
      const Mxfp4Kernels& k = mxfp4_kernels();
      parallel_for(rows, rows_per_piece(m.cols, 4), options_.threads, [&](size_t a, size_t b) {
        k.dequantize_bf16(v.source.weight.data() + a * cols / 2, v.source.scales.data() + a * cols / kMxfp4BlockSize,
                          (b - a) * cols, v.bf16.data() + a * cols);
      });
    } else if (m.storage == Storage::Fp8BlockF32 && plan_.quantizer != Nvfp4Numerics::CompressedTensors) {
      // ModelOpt's DeepSeek V3 script quantizes the F32 dequant with the amax of the BF16 dequant
      // (which is the F32 amax rounded to BF16: rounding is monotonic).
      v.f32.resize(rows * cols);
      const Fp8BlockShape shape{rows, cols, Fp8ScaleKind::F32};
      const Fp8BlockKernels& k = fp8_block_kernels();
      parallel_for(rows, rows_per_piece(m.cols, 8), options_.threads, [&](size_t a, size_t b) {
        k.dequantize_f32(v.source.weight.data(), v.source.scales.data(), shape, a, b, v.f32.data() + a * cols);
      });
      v.amax = round_to_bf16(parallel_amax(v.span(), options_.threads));
    } else {
      // The official FP8 dequant to BF16, which is what ModelOpt quantizes for V4 (the oracle's v4_*).
      v.bf16.resize(rows * cols);
      const Fp8BlockShape shape{rows, cols, m.storage == Storage::Fp8BlockF32 ? Fp8ScaleKind::F32 : Fp8ScaleKind::E8M0};
      const Fp8BlockKernels& k = fp8_block_kernels();
      parallel_for(rows, rows_per_piece(m.cols, 4), options_.threads, [&](size_t a, size_t b) {
        k.dequantize_bf16(v.source.weight.data(), v.source.scales.data(), shape, a, b, v.bf16.data() + a * cols);
      });
    }
    if (v.f32.empty()) v.amax = parallel_amax(v.span(), options_.threads);
    if (!options_.allow_nonfinite && !std::isfinite(v.amax))
      throw InputError(m.weight.file->path() + ": tensor " + io::quote_name(m.weight.info->name) +
                       ": holds NaN or infinite values; --allow-nonfinite converts it anyway");
    return v;
  }

  // Siblings prepared early for their group's scale are kept (at most a group's worth) until
  // their own turn.
  ModuleValues take_or_prepare(size_t i) {
    if (const auto it = pending_.find(i); it != pending_.end()) {
      ModuleValues v = std::move(it->second);
      pending_.erase(it);
      return v;
    }
    return prepare(i);
  }

  // The global scale of module i's fused group, from every member wherever it is stored. Cached,
  // so the other members reuse it. The cast needs only the siblings' E8M0 bytes.
  SharedScale shared_scale(size_t i, const ModuleSource* own_cast, const ModuleValues* own_values) {
    if (const auto it = shared_.find(i); it != shared_.end()) return it->second;
    const Nvfp4Module& m = plan_.modules[i];
    std::vector<size_t> members = {i};
    members.insert(members.end(), m.fused.begin(), m.fused.end());
    SharedScale shared;
    if (m.action == ConvertAction::Transcode) {
      int k_max = INT_MIN;
      for (size_t j : members) {
        const ModuleSource partner = j == i ? ModuleSource{} : load(plan_.modules[j], false);
        const std::vector<uint8_t>& scales = j == i ? own_cast->scales : partner.scales;
        k_max = std::max(k_max, mxfp4_max_exponent(scales.data(), scales.size(), INT_MIN));
      }
      shared.k_max = k_max == INT_MIN ? -E8M0::kBias : k_max;
      shared.global = mxfp4_cast_weight_scale_2(shared.k_max);
    } else {
      float amax = 0;
      for (size_t j : members) {
        float a = 0;
        if (j == i) {
          a = own_values->amax;
        } else {
          ModuleValues sibling = prepare(j);
          a = sibling.amax;
          pending_.emplace(j, std::move(sibling));
        }
        amax = std::isnan(a) || std::isnan(amax) ? NAN : std::max(amax, a);
      }
      shared.amax = amax;
      shared.global = nvfp4_method_global_scale(amax, plan_.scales, plan_.quantizer, own_values->span().dtype);
    }
    for (size_t j : members) shared_[j] = shared;
    return shared;
  }

  const ConvertPlan& plan_;
  const ConvertOptions& options_;
  std::unique_ptr<GptqGpu> gpu_;  // GPTQ's GPU session, opened by the first weight it compensates
  ModuleResult current_;
  std::map<size_t, ModuleValues> pending_;
  std::unordered_map<size_t, SharedScale> shared_;  // one float pair per module seen: small
};

std::vector<std::byte> owned_bytes(const void* data, size_t n) {
  std::vector<std::byte> out(n);
  if (n) std::memcpy(out.data(), data, n);
  return out;
}

class ShardConverter : public ShardSink {
 public:
  ShardConverter(const ConvertPlan& plan, const ConvertOptions& options, ConvertReport& report,
                 const ConvertProgressFn& progress)
      : plan_(plan), options_(options), report_(report), progress_(progress), modules_(plan, options),
        total_(plan.input_bytes()) {
    if (options.direct_io)
      for (const auto& file : plan.source_files) report_.source_files_direct += file->enable_direct_reads() ? 1 : 0;
  }
  ShardConverter(const ShardConverter&) = delete;
  ShardConverter& operator=(const ShardConverter&) = delete;
  ~ShardConverter() {
    for (const auto& [file, fd] : source_fds_)
      if (fd >= 0) ::close(fd);
  }

  void skip(const io::PlannedShard& shard) override {
    for (size_t i : shard.tensors) done_ += source_bytes(plan_.tensors[i]);
    report_progress();
  }

  // Returns the XXH3-64 of the shard's data section.
  std::optional<std::string> write(const io::PlannedShard& shard, const std::string& path) override {
    io::SafetensorsWriter writer(path);
    writer.set_metadata(kShardMetadata);
    std::unordered_map<std::string_view, size_t> by_name;
    for (size_t i : shard.tensors) {
      const io::TensorInfo& t = plan_.tensors[i].output;
      writer.declare(t.name, t.dtype, t.shape);
      by_name.emplace(t.name, i);
    }
    writer.begin();
    ShardHasher hasher;
    {
      // Reading and computing here, writing (and hashing) on the sink's thread: around the page
      // cache where the file system allows (direct_io.h), else through it, kept tensors then
      // copied by the kernel where it can (range_copy.h).
      ShardDataStream stream(writer, options_.direct_io);
      if (stream.is_direct()) ++report_.shards_written_direct;
      std::optional<OpenTempShard> temp;
      if (!stream.is_direct() && !std::getenv("FP4KIT_TEST_NO_KERNEL_COPY")) temp = open_temp_shard(writer);
      BackgroundWriter sink(writer, stream, kQueuedBytes, &hasher, temp);
      for (const io::TensorInfo& out : writer.layout()) emit(plan_.tensors[by_name.at(out.name)], sink);
      sink.finish();
    }
    writer.commit();
    drop_written_pages(path);
    for (size_t i : shard.tensors) report_.output_bytes += plan_.tensors[i].output.nbytes();
    return hasher.hex();
  }

 private:
  // Source bytes a tensor stands for, for progress: a copied tensor's, or a module's weight and
  // scale (counted with its NVFP4 weight).
  uint64_t source_bytes(const ConvertTensor& t) const {
    if (t.kind == ConvertOutput::Copy) return t.source.info->nbytes();
    if (t.kind == ConvertOutput::Dequantized) return t.source.info->nbytes() + t.scale.info->nbytes();
    if (t.kind == ConvertOutput::Weight) return plan_.modules[t.module].input_bytes();
    return 0;
  }

  void emit(const ConvertTensor& t, BackgroundWriter& sink) {
    const auto start = Clock::now();
    ConvertActionStats* stats = &report_.keep;
    if (t.kind == ConvertOutput::Copy) {
      copy(t, sink);
      ++stats->tensors_written;
      stats->input_bytes += t.source.info->nbytes();
    } else if (t.kind == ConvertOutput::Dequantized) {
      stats = &report_.dequantize;
      dequantize(t, sink);
      ++stats->tensors_written;
      stats->input_bytes += source_bytes(t);
    } else {
      const Nvfp4Module& m = plan_.modules[t.module];
      stats = &report_.stats(m.action);
      const ModuleResult& r = modules_.result(t.module, report_.cast, report_.hessian, report_.gptq);
      switch (t.kind) {
        case ConvertOutput::Weight:
          sink.push(owned_bytes(r.packed.data(), r.packed.size()));
          ++stats->tensors_written;
          stats->input_bytes += m.input_bytes();
          break;
        case ConvertOutput::BlockScale: sink.push(owned_bytes(r.scales.data(), r.scales.size())); break;
        case ConvertOutput::GlobalScale: sink.push(f32_bytes(r.global)); break;
        case ConvertOutput::InputScale: sink.push(f32_bytes(input_scale(*m.input_amax))); break;
        case ConvertOutput::Copy:
        case ConvertOutput::Dequantized: break;
      }
    }
    stats->output_bytes += t.output.nbytes();
    stats->seconds += std::chrono::duration<double>(Clock::now() - start).count();
    const uint64_t in = source_bytes(t);
    report_.input_bytes += in;
    done_ += in;
    report_progress();
  }

  // ModelOpt: f32(amax / 2688), a true f32 division as the exporter does on the CPU.
  // compressed-tensors: its global-scale rule on the (BF16) activation amax.
  float input_scale(float amax) const {
    if (plan_.format == ConvertFormat::CompressedTensors)
      return nvfp4_global_scale(amax, Nvfp4Numerics::CompressedTensors, DType::BF16);
    return amax / kNvfp4ScaleDenominator;
  }

  // A descriptor of its own on a source file, for copy_file_range; -1 if it cannot be opened.
  int source_fd(const io::SafetensorsFile& file) {
    const auto it = source_fds_.find(&file);
    if (it != source_fds_.end()) return it->second;
    const int fd = ::open(file.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    return source_fds_[&file] = fd;
  }

  void copy(const ConvertTensor& t, BackgroundWriter& sink) {
    const io::TensorInfo& src = *t.source.info;
    const uint64_t total = src.nbytes();
    if (const int fd = sink.can_copy() && total ? source_fd(*t.source.file) : -1; fd >= 0) {
      sink.push_copy(fd, t.source.file->header().data_offset + src.begin, total);
      return;
    }
    t.source.file->advise_sequential(src);
    for (uint64_t offset = 0; offset < total;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kCopyChunkBytes, total - offset));
      std::vector<std::byte> buffer(n);
      parallel_for(n, kPieceBytes, options_.threads, [&](size_t a, size_t b) {
        t.source.file->read_range(src, offset + a, std::span(buffer).subspan(a, b - a));
      });
      sink.push(std::move(buffer));
      offset += n;
    }
    t.source.file->drop_cache(src);
  }

  // An FP8-block weight as BF16 (DeepSeek's official dequant), in steps of whole 128-row blocks.
  void dequantize(const ConvertTensor& t, BackgroundWriter& sink) {
    const io::TensorInfo& w = *t.source.info;
    const size_t rows = static_cast<size_t>(w.shape[0]), cols = static_cast<size_t>(w.shape[1]);
    const std::vector<std::byte> scales = t.scale.file->read_all(*t.scale.info);
    const Fp8ScaleKind kind = t.storage == Storage::Fp8BlockF32 ? Fp8ScaleKind::F32 : Fp8ScaleKind::E8M0;
    const size_t step = std::max<size_t>(1, kCopyChunkBytes / (2 * cols * kFp8BlockSize)) * kFp8BlockSize;
    std::vector<uint8_t> input;
    t.source.file->advise_sequential(w);
    for (size_t r0 = 0; r0 < rows; r0 += step) {
      const size_t n = std::min(step, rows - r0);
      std::vector<std::byte> out(n * cols * 2);
      dequantize_fp8_block_rows(t.source, scales, kind, r0, n, input, reinterpret_cast<uint16_t*>(out.data()),
                                options_.threads);
      sink.push(std::move(out));
    }
    t.source.file->drop_cache(w);
  }

  void report_progress() const {
    if (progress_) progress_(std::min(done_, total_), total_);
  }

  const ConvertPlan& plan_;
  const ConvertOptions& options_;
  ConvertReport& report_;
  const ConvertProgressFn& progress_;
  ModuleConverter modules_;
  const uint64_t total_;
  uint64_t done_ = 0;
  std::unordered_map<const io::SafetensorsFile*, int> source_fds_;
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
    case ConvertAction::Dequantize: return dequantize;
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
  ConvertReport report;
  report.shards = plan.shards.size();
  ShardConverter converter(plan, options, report, progress);

  ShardedJob job;
  job.plan_file = &convert_plan_file();
  job.manifest = plan.manifest;
  job.resume = options.resume;
  job.hashed_shards = true;
  job.src_dir = plan.src_dir;
  job.dst_dir = dst;
  job.shards = &plan.shards;
  job.shard_outputs =
      planned_shard_outputs(plan.shards, [&](size_t i) -> const io::TensorInfo& { return plan.tensors[i].output; });
  job.shard_metadata = kShardMetadata;
  job.extra_files = plan.extra_files;
  if (plan.config_text) job.text_files.emplace_back(std::string(io::kConfigFileName), *plan.config_text);
  if (!plan.hf_quant_config_text.empty())
    job.text_files.emplace_back(std::string(kHfQuantConfigFileName), plan.hf_quant_config_text);
  job.index = plan.index();
  const ShardedJobCounts counts = run_sharded_job(job, converter);
  report.shards_written = counts.shards_written;
  report.shards_skipped = counts.shards_skipped;
  report.files_copied = counts.files_copied;
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

}  // namespace fp4kit
