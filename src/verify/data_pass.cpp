#include "verify/data_pass.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "base/error.h"
#include "formats/bf16.h"
#include "base/parallel.h"
#include "formats/nvfp4.h"
#include "io/quote_name.h"
#include "models/stored_weight.h"
#include "verify/layout_config.h"
#include "verify/tensor_error.h"

namespace fp4kit::verify {

namespace {

bool is_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string number(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// Findings of one work item, merged in item order after the pass.
struct ItemResult {
  std::vector<Finding> findings;
  std::array<uint64_t, 256> histogram{};
  uint64_t source_bytes = 0;
  bool kept_identical = false;
  bool dequantized_exact = false;
  TensorNumerics numerics;
};

struct BlockScaleCounts {
  uint64_t nan = 0, negative = 0, zero_over_values = 0;
  int64_t first_nan = -1, first_negative = -1, first_zero = -1;  // block index
};

// E4M3 bytes: 0x7F/0xFF NaN; the sign bit set on a nonzero magnitude is a negative scale; a zero
// scale over nonzero nibbles loses the block's values.
void scan_block_scales(const uint8_t* scales, const uint8_t* packed, size_t blocks, uint64_t first_block,
                       std::array<uint64_t, 256>& histogram, BlockScaleCounts& c) {
  for (size_t b = 0; b < blocks; ++b) {
    const uint8_t s = scales[b];
    ++histogram[s];
    const int64_t at = static_cast<int64_t>(first_block + b);
    if ((s & 0x7F) == 0x7F) {
      if (!c.nan++) c.first_nan = at;
    } else if ((s & 0x80) && (s & 0x7F)) {
      if (!c.negative++) c.first_negative = at;
    } else if ((s & 0x7F) == 0) {
      bool values = false;
      for (size_t i = 0; i < kNvfp4BlockSize / 2; ++i) values = values || (packed[b * 8 + i] & 0x77) != 0;
      if (values && !c.zero_over_values++) c.first_zero = at;
    }
  }
}

// max |x| over the finite values (a NaN or Inf in the source must not decide the expectation).
float finite_amax(const float* x, size_t n) {
  const float fast = nvfp4_kernels().amax(FloatSpan{x, DType::F32, n});  // NaN/Inf if any is
  if (std::isfinite(fast)) return fast;
  float amax = 0.0f;
  for (size_t i = 0; i < n; ++i)
    if (std::isfinite(x[i])) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}

const uint8_t* tensor_bytes(const io::Checkpoint& ckpt, const std::string& name) {
  const auto [file, info] = ckpt.find(name);
  if (!file) throw InputError(ckpt.dir() + ": no tensor " + io::quote_name(name));
  return reinterpret_cast<const uint8_t*>(file->view(*info).data());
}

void drop_cache(const io::Checkpoint& ckpt, const std::string& name) {
  const auto [file, info] = ckpt.find(name);
  if (file) file->drop_cache(*info);
}

class DataPass {
 public:
  DataPass(const io::Checkpoint& output, const io::Checkpoint* source, const SourceAccounting* accounting,
           const DataPassOptions& options)
      : output_(output), source_(source), accounting_(accounting), options_(options),
        out_weights_(output) {
    if (source_ && accounting_ && accounting_->source_pairing_clean) src_weights_.emplace(*source_);
  }

  void module(const Nvfp4Module& m, ItemResult& r) {
    TensorNumerics& n = r.numerics;
    n.name = m.weight;
    std::tie(n.kind, n.layer) = tensor_kind(m.weight);
    const size_t rows = static_cast<size_t>(m.logical_shape[0]), cols = static_cast<size_t>(m.logical_shape[1]);
    const size_t chunk_rows = std::max<size_t>(1, options_.chunk_values / std::max<size_t>(cols, 1));
    const std::string weight_name = m.module + ".weight";  // StoredWeights' name for both layouts

    const SourceWeight* src = nullptr;
    if (src_weights_ && accounting_) {
      const auto it = accounting_->source_of.find(m.module);
      if (it != accounting_->source_of.end() && src_weights_->has(it->second.weight)) src = &it->second;
    }
    n.source_storage = src ? src->storage : "";

    // Lossless cast: an MXFP4 source, ModelOpt's power-of-two weight_scale_2 = 2^(k_max-8). Groups
    // whose exponent lies below k_max-17 fall outside E4M3's window and may differ.
    int k_max = 0;
    const uint8_t* src_e8m0 = nullptr;
    if (src && !src->mxfp4_scale.empty() && !m.compressed_tensors && m.global_value && *m.global_value > 0 &&
        std::isfinite(*m.global_value)) {
      int e = 0;
      const float mant = std::frexp(*m.global_value, &e);
      if (mant == 0.5f) {
        n.expected_exact = true;
        k_max = e - 1 + 8;
        src_e8m0 = tensor_bytes(*source_, src->mxfp4_scale);
      }
    }

    // The expectation: a fresh ModelOpt NVFP4 quantization of the source with its own amax.
    std::optional<Nvfp4Scaling> fresh;
    if (src && options_.expected) {
      // The source is decoded twice, chunk by chunk (amax, then the comparison): with small chunks
      // that stay in cache, a second MXFP4/FP8 decode costs less than keeping the tensor whole.
      float amax = 0.0f;
      for (size_t r0 = 0; r0 < rows; r0 += chunk_rows) {
        const std::vector<float> s = src_weights_->read_f32(src->weight, r0, std::min(rows, r0 + chunk_rows));
        amax = std::max(amax, finite_amax(s.data(), s.size()));
      }
      if (amax > 0.0f) fresh = nvfp4_scaling(amax, Nvfp4Numerics::ModelOpt, DType::F32);
    }

    const uint8_t* packed = tensor_bytes(output_, m.weight);
    const uint8_t* scales = tensor_bytes(output_, m.block_scale);
    BlockScaleCounts bc;
    TensorError err, fresh_err;
    uint64_t mismatched_in_window = 0;
    std::vector<uint8_t> fresh_packed, fresh_scales;
    std::vector<float> fresh_values;
    for (size_t r0 = 0; r0 < rows; r0 += chunk_rows) {
      const size_t r1 = std::min(rows, r0 + chunk_rows), count = (r1 - r0) * cols;
      const size_t first = r0 * cols;
      scan_block_scales(scales + first / kNvfp4BlockSize, packed + first / 2, count / kNvfp4BlockSize,
                        first / kNvfp4BlockSize, r.histogram, bc);
      const std::vector<float> out = out_weights_.read_f32(weight_name, r0, r1);
      if (!src) {
        err.add(out.data(), nullptr, count);
        continue;
      }
      const std::vector<float> ref_chunk = src_weights_->read_f32(src->weight, r0, r1);
      const float* ref = ref_chunk.data();
      r.source_bytes += count * sizeof(float);
      err.add(out.data(), ref, count);
      if (n.expected_exact) {
        // Rows hold whole 32-value groups (K is a multiple of 32 for MXFP4).
        for (size_t g = 0; g < count / 32; ++g) {
          const uint8_t byte = src_e8m0[first / 32 + g];
          if (byte == 0 || static_cast<int>(byte) - 127 < k_max - 17) {
            n.lossy_window_values += 32;
            continue;
          }
          for (size_t i = g * 32; i < g * 32 + 32; ++i) mismatched_in_window += !(out[i] == ref[i]);
        }
      }
      if (fresh) {
        fresh_packed.resize(count / 2);
        fresh_scales.resize(count / kNvfp4BlockSize);
        fresh_values.resize(count);
        const Nvfp4Kernels& k = nvfp4_kernels();
        k.quantize(FloatSpan{ref, DType::F32, count}, *fresh, fresh_packed.data(), fresh_scales.data());
        k.dequantize(fresh_packed.data(), fresh_scales.data(), count, *fresh, fresh_values.data());
        fresh_err.add(fresh_values.data(), ref, count);
      }
    }
    drop_cache(output_, m.weight);
    drop_cache(output_, m.block_scale);
    if (src) {
      drop_cache(*source_, src->weight);
      if (!src->mxfp4_scale.empty()) drop_cache(*source_, src->mxfp4_scale);
    }

    n.values = err.values;
    n.nan_values = err.nan;
    n.inf_values = err.inf;
    n.source_nan_values = err.ref_nan;
    n.source_inf_values = err.ref_inf;
    n.compared = src != nullptr;
    if (src) {
      n.sqnr_db = err.sqnr_db();
      n.rel_rms = err.rel_rms();
      n.max_abs_error = err.max_abs;
      n.exact_values = err.exact;
      if (fresh) n.expected_sqnr_db = fresh_err.sqnr_db();
    }

    auto fail = [&](const std::string& check, const std::string& message) {
      r.findings.push_back({check, Severity::Fail, m.weight, message});
      if (n.flag.empty()) n.flag = check;
    };
    const std::string w = io::quote_name(m.weight);
    auto block_at = [&](int64_t b) {
      const int64_t per_row = static_cast<int64_t>(cols / kNvfp4BlockSize);
      return "row " + std::to_string(b / per_row) + ", block " + std::to_string(b % per_row);
    };
    if (bc.nan)
      fail("scale.block_nan", io::quote_name(m.block_scale) + " holds " + std::to_string(bc.nan) +
                                  " NaN block scales (E4M3 0x7F/0xFF), first at " + block_at(bc.first_nan));
    if (bc.negative)
      fail("scale.block_negative", io::quote_name(m.block_scale) + " holds " + std::to_string(bc.negative) +
                                       " negative block scales, first at " + block_at(bc.first_negative) +
                                       " (the Marlin kernels assume scales >= 0)");
    if (bc.zero_over_values)
      fail("scale.block_zero", io::quote_name(m.block_scale) + " holds " + std::to_string(bc.zero_over_values) +
                                   " zero block scales over nonzero values (the values are lost), first at " + block_at(bc.first_zero));
    if (n.nan_values + n.inf_values > n.source_nan_values + n.source_inf_values)
      fail("numerics.nonfinite", w + " dequantizes to " + std::to_string(n.nan_values) + " NaN and " +
                                     std::to_string(n.inf_values) + " Inf values" +
                                     (src ? " (the source has " + std::to_string(n.source_nan_values + n.source_inf_values) + ")" : ""));
    if (n.expected_exact && mismatched_in_window)
      fail("numerics.not_lossless", w + " is a power-of-two cast of MXFP4 " + io::quote_name(src->weight) + " but " +
                                        std::to_string(mismatched_in_window) + " values inside the cast's exact window differ");
    const std::string module = module_of_weight(m.weight);
    const double margin = options_.gptq_modules.count(module)      ? options_.gptq_sqnr_margin_db
                          : options_.hessian_modules.count(module) ? options_.hessian_sqnr_margin_db
                                                                   : options_.sqnr_margin_db;
    if (n.sqnr_db && n.expected_sqnr_db && *n.sqnr_db < *n.expected_sqnr_db - margin)
      fail("numerics.low_sqnr", w + ": SQNR " + number(*n.sqnr_db) + " dB against the source, a fresh NVFP4 quantization gives " +
                                    number(*n.expected_sqnr_db) + " dB (more than " + number(margin) + " dB better)");
    if (n.sqnr_db && options_.fail_below_sqnr_db && *n.sqnr_db < *options_.fail_below_sqnr_db)
      fail("numerics.below_threshold", w + ": SQNR " + number(*n.sqnr_db) + " dB is below --fail-below-sqnr " +
                                           number(*options_.fail_below_sqnr_db) + " dB");
  }

  // An FP8-block source weight written as BF16: the official dequant (f32 product rounded to
  // BF16), bit for bit, in 128-row steps.
  void dequantized(const std::string& name, ItemResult& r) {
    const auto [ofile, oinfo] = output_.find(name);
    const size_t rows = static_cast<size_t>(oinfo->shape[0]), cols = static_cast<size_t>(oinfo->shape[1]);
    uint64_t differing = 0;
    int64_t first = -1;
    std::vector<uint16_t> out;
    for (size_t r0 = 0; r0 < rows; r0 += 128) {
      const size_t r1 = std::min(rows, r0 + 128);
      const std::vector<float> src = src_weights_->read_f32(name, r0, r1);
      out.resize((r1 - r0) * cols);
      ofile->read_range(*oinfo, r0 * cols * 2, std::as_writable_bytes(std::span(out)));
      for (size_t i = 0; i < out.size(); ++i) {
        const uint16_t want = BF16::from_float(src[i]).bits;
        const bool both_nan = (want & 0x7FFF) > 0x7F80 && (out[i] & 0x7FFF) > 0x7F80;
        if (out[i] != want && !both_nan) {
          if (first < 0) first = static_cast<int64_t>(r0 * cols + i);
          ++differing;
        }
      }
    }
    r.source_bytes = oinfo->nbytes() / 2;
    r.dequantized_exact = differing == 0;
    if (differing)
      r.findings.push_back({"source.dequant_mismatch", Severity::Fail, name,
                            io::quote_name(name) + " in " + ofile->path() + " is BF16 where the source stores FP8 blocks, but " +
                                std::to_string(differing) + " of " + std::to_string(rows * cols) +
                                " values differ from the official dequant (first at element " + std::to_string(first) + ")"});
  }

  void kept(const std::string& name, ItemResult& r) {
    const auto [sfile, sinfo] = source_->find(name);
    const auto [ofile, oinfo] = output_.find(name);
    const uint64_t n = sinfo->nbytes();
    // pread in chunks: bounded memory whatever the tensor's size (an embedding is gigabytes).
    constexpr uint64_t kChunk = 4 << 20;
    std::vector<std::byte> a(std::min(kChunk, n)), b(std::min(kChunk, n));
    sfile->advise_sequential(*sinfo);
    ofile->advise_sequential(*oinfo);
    uint64_t differing = 0;
    int64_t first = -1;
    for (uint64_t at = 0; at < n; at += kChunk) {
      const uint64_t len = std::min(kChunk, n - at);
      sfile->read_range(*sinfo, at, std::span(a.data(), len));
      ofile->read_range(*oinfo, at, std::span(b.data(), len));
      if (std::memcmp(a.data(), b.data(), len) == 0) continue;
      for (uint64_t i = 0; i < len; ++i)
        if (a[i] != b[i]) {
          if (first < 0) first = static_cast<int64_t>(at + i);
          ++differing;
        }
    }
    sfile->drop_cache(*sinfo);
    ofile->drop_cache(*oinfo);
    r.source_bytes = n;
    r.kept_identical = differing == 0;
    if (differing)
      r.findings.push_back({"source.changed", Severity::Fail, name,
                            io::quote_name(name) + " in " + ofile->path() + " differs from the source in " +
                                std::to_string(differing) + " of " + std::to_string(n) + " bytes (first at byte " +
                                std::to_string(first) + "); tensors that are not quantized must be kept bit for bit"});
  }

 private:
  const io::Checkpoint& output_;
  const io::Checkpoint* source_;
  const SourceAccounting* accounting_;
  const DataPassOptions& options_;
  StoredWeights out_weights_;
  std::optional<StoredWeights> src_weights_;
};

}  // namespace

std::pair<std::string, int64_t> tensor_kind(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = name.find('.', start);
    parts.push_back(name.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (!parts.empty() && (parts.back() == "weight" || parts.back() == "weight_packed")) parts.pop_back();
  int64_t layer = -1;
  std::string kind;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (is_digits(parts[i])) {
      if (i >= 1 && (parts[i - 1] == "layers" || parts[i - 1] == "h") && layer < 0 && parts[i].size() <= 9)
        layer = std::stoll(parts[i]);
      continue;
    }
    if (parts[i] == "layers" || parts[i] == "model") continue;
    kind += (kind.empty() ? "" : ".") + parts[i];
  }
  return {kind, layer};
}

void run_data_pass(const io::Checkpoint& output, const Nvfp4Inventory& inventory, const io::Checkpoint* source,
                   const SourceAccounting* accounting, const DataPassOptions& options, VerifyReport& report) {
  std::optional<DataPass> pass;
  try {
    pass.emplace(output, source, accounting, options);
  } catch (const InputError& e) {
    report.add("numerics.skipped", Severity::Fail, "", std::string("the weights could not be read for the numerics: ") + e.what());
    return;
  }
  const size_t modules = inventory.modules.size();
  const size_t kept = accounting && source ? accounting->kept.size() : 0;
  const size_t dequantized = accounting && source ? accounting->dequantized.size() : 0;
  std::vector<ItemResult> results(modules + kept + dequantized);
  auto subject = [&](size_t i) -> const std::string& {
    if (i < modules) return inventory.modules[i].weight;
    if (i < modules + kept) return accounting->kept[i - modules];
    return accounting->dequantized[i - modules - kept];
  };
  parallel_for(results.size(), 1, options.threads, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      try {
        if (i < modules) pass->module(inventory.modules[i], results[i]);
        else if (i < modules + kept) pass->kept(subject(i), results[i]);
        else pass->dequantized(subject(i), results[i]);
      } catch (const InputError& e) {
        results[i].findings.push_back({"numerics.skipped", Severity::Fail, subject(i), e.what()});
      }
    }
  });
  for (size_t i = 0; i < results.size(); ++i) {
    ItemResult& r = results[i];
    for (Finding& f : r.findings) report.findings.push_back(std::move(f));
    for (size_t b = 0; b < 256; ++b) report.block_scale_histogram[b] += r.histogram[b];
    report.source_bytes_compared += r.source_bytes;
    if (i < modules) report.numerics.push_back(std::move(r.numerics));
    else if (i < modules + kept) report.kept_identical += r.kept_identical;
    else report.dequantized_exact += r.dequantized_exact;
  }
}

}  // namespace fp4kit::verify
