#include "convert/convert_plan.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <filesystem>
#include <regex>
#include <set>

#include "base/error.h"
#include "convert/calibration.h"
#include "convert/hessian_statistics.h"
#include "convert/fingerprint.h"
#include "convert/modelopt_v4_layout.h"
#include "convert/nvfp4_layout.h"
#include "convert/source_checkpoint.h"
#include "formats/nvfp4.h"
#include "io/checkpoint_index.h"
#include "io/quote_name.h"
#include "io/strict_json.h"
#include "models/fused_groups.h"
#include "models/model_family.h"
#include "models/quantized_weights.h"

namespace fp4kit {

namespace {

constexpr std::string_view kWeightSuffix = ".weight";

bool is_float_dtype(DType d) { return d == DType::BF16 || d == DType::F16 || d == DType::F32; }

// "layers.12.ffn.experts" for "layers.12.ffn.experts.3.w1", sorted by block kind then number.
std::string expert_container(const std::string& module) {
  const size_t experts = module.find(".experts.");
  return module.substr(0, experts + std::string_view(".experts").size());
}
std::pair<int, long> container_order(const std::string& container) {
  const bool mtp = container.starts_with("mtp.");
  const size_t dot = container.find('.');
  return {mtp ? 1 : 0, std::stol(container.substr(dot + 1))};
}

std::optional<std::regex> compile_regex(const std::optional<std::string>& pattern, const std::string& flag) {
  if (!pattern) return std::nullopt;
  try {
    return std::regex(*pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw InputError(flag + " " + *pattern + ": not a valid regular expression (" + e.what() + ")");
  }
}

// "re:layers\.\d+\.ffn\.gate$" for "layers.*.ffn.gate": compressed-tensors matches an ignore entry
// by equality, or with a "re:" prefix by Python's re.match (anchored at the start only), never as
// a glob.
std::string glob_as_compressed_tensors_regex(const std::string& glob) {
  std::string out = "re:";
  for (const char c : glob) {
    if (c == '*') out += "\\d+";
    else if (c == '.') out += "\\.";
    else out += c;
  }
  return out + "$";
}

// Module names as exclude patterns: "layers.*.ffn.gate" stands for every "layers.N.ffn.gate" when
// no converted module has that shape (as a "re:" regex for compressed-tensors); otherwise the names
// themselves. Sorted, unique.
std::vector<std::string> summarize_modules(const std::vector<std::string>& left, const std::vector<std::string>& converted,
                                           bool compressed_tensors) {
  static const std::regex number(R"(\.\d+\.)");
  auto pattern = [](const std::string& name) {
    std::string p = std::regex_replace(name, number, ".*.");
    return std::regex_replace(p, number, ".*.");  // adjacent numbers ("layers.0.0.")
  };
  std::set<std::string> converted_patterns;
  for (const std::string& c : converted) converted_patterns.insert(pattern(c));
  std::set<std::string> out;
  for (const std::string& name : left) {
    const std::string p = pattern(name);
    if (converted_patterns.count(p) || p == name) out.insert(name);
    else out.insert(compressed_tensors ? glob_as_compressed_tensors_regex(p) : p);
  }
  return {out.begin(), out.end()};
}

io::TensorInfo output_info(std::string name, DType dtype, std::vector<int64_t> shape) {
  const io::StorageSize size = io::storage_size(dtype, shape);
  return io::TensorInfo{std::move(name), dtype, std::move(shape), 0, size.nbytes};
}

}  // namespace

std::string_view convert_numerics_name(ConvertNumerics n) {
  switch (n) {
    case ConvertNumerics::Auto: return "auto";
    case ConvertNumerics::Cast: return "cast";
    case ConvertNumerics::ModelOpt: return "modelopt";
    case ConvertNumerics::CompressedTensors: return "compressed-tensors";
  }
  return "?";
}

std::optional<ConvertNumerics> convert_numerics_from_name(std::string_view name) {
  for (ConvertNumerics n : {ConvertNumerics::Auto, ConvertNumerics::Cast, ConvertNumerics::ModelOpt,
                            ConvertNumerics::CompressedTensors})
    if (convert_numerics_name(n) == name) return n;
  return std::nullopt;
}

std::string_view convert_format_name(ConvertFormat f) {
  return f == ConvertFormat::CompressedTensors ? "compressed-tensors" : "modelopt";
}

std::optional<ConvertFormat> convert_format_from_name(std::string_view name) {
  for (ConvertFormat f : {ConvertFormat::ModelOpt, ConvertFormat::CompressedTensors})
    if (convert_format_name(f) == name) return f;
  return std::nullopt;
}

std::string_view convert_action_name(ConvertAction a) {
  switch (a) {
    case ConvertAction::Keep: return "keep";
    case ConvertAction::Drop: return "drop";
    case ConvertAction::Quantize: return "quantize";
    case ConvertAction::Transcode: return "transcode";
    case ConvertAction::Dequantize: return "dequantize";
  }
  return "?";
}

uint64_t Nvfp4Module::input_bytes() const {
  return weight.info->nbytes() + (scale.info ? scale.info->nbytes() : 0);
}

const ConvertActionCount& ConvertPlan::count(ConvertAction a) const {
  switch (a) {
    case ConvertAction::Keep: return keep;
    case ConvertAction::Drop: return drop;
    case ConvertAction::Quantize: return quantize;
    case ConvertAction::Transcode: return transcode;
    case ConvertAction::Dequantize: return dequantize;
  }
  return keep;
}

uint64_t ConvertPlan::input_bytes() const {
  uint64_t n = 0;
  for (const auto& file : source_files)
    for (const io::TensorInfo& t : file->tensors()) n += t.nbytes();
  return n;
}

uint64_t ConvertPlan::output_bytes() const {
  uint64_t n = 0;
  for (const ConvertTensor& t : tensors) n += t.output.nbytes();
  return n;
}

io::CheckpointIndex ConvertPlan::index() const {
  std::vector<io::TensorInfo> outputs;
  outputs.reserve(tensors.size());
  for (const ConvertTensor& t : tensors) outputs.push_back(t.output);
  return io::index_for(shards, outputs);
}

const JobPlanFile& convert_plan_file() {
  static const JobPlanFile job{"convert", kConvertPlanFileName, kConvertManifestFormat,
                               {{"shard_bytes", "--shard-size"},
                                {"numerics", "--numerics"},
                                {"scales", "--scales"},
                                {"hessian", "--hessian (a file from another calibration run)"},
                                {"hessian_damping", "--hessian-damping"},
                                {"hessian_missing", "--hessian-missing"},
                                {"gptq", "--gptq (or --gptq-damping, --gptq-block, --gptq-act-order, --gptq-missing, --device)"},
                                {"recipe", "--recipe"},
                                {"format", "--format"},
                                {"include", "--include"},
                                {"exclude", "--exclude"},
                                {"strict", "--strict"},
                                {"calibration", "--calib (a file with other values)"},
                                {"weight_only", "--weight-only"},
                                {"include_mtp_experts", "--include-mtp-experts"}}};
  return job;
}

namespace {

// GPTQ compensates with XᵀX; from fewer rows than the weight's input width it is singular (damping
// makes it invertible), and the compensation fits the calibration rows at the expense of other
// inputs: on full-size V4-Flash layers calibrated on 2048 rows, GPTQ raised the held-out KLD of every
// scale method (bench/RESULTS.md). Warned about, not refused: a routed expert sees few rows by nature.
void warn_of_underdetermined_xtx(ConvertPlan& plan, const std::string& path) {
  size_t count = 0;
  const Nvfp4Module* worst = nullptr;
  int64_t worst_rows = 0;
  for (const Nvfp4Module& m : plan.modules) {
    if (!m.full_xtx) continue;
    const std::optional<int64_t> rows = plan.full_statistics->rows(m.name);
    if (!rows || *rows >= m.cols) continue;
    ++count;
    if (!worst || static_cast<double>(*rows) / static_cast<double>(m.cols) <
                      static_cast<double>(worst_rows) / static_cast<double>(worst->cols))
      worst = &m, worst_rows = *rows;
  }
  if (count)
    plan.warnings.push_back("--gptq: " + std::to_string(count) + " weight" + (count == 1 ? " has" : "s have") +
                            " XᵀX summed over fewer rows than their input channels in " + path + " (fewest: " +
                            io::quote_name(worst->name) + ", " + std::to_string(worst_rows) + " rows for " +
                            std::to_string(worst->cols) + " channels): GPTQ then fits the calibration rows and may "
                            "do worse on other text; calibrate on more tokens (--samples x --seq-len) than the widest input");
}

}  // namespace

ConvertPlan plan_convert(const std::string& src_dir, const std::string& dst_dir, const ConvertOptions& options) {
  if (options.recipe != "moe" && options.recipe != "all-linear")
    throw InputError("--recipe " + options.recipe +
                     ": unknown recipe (known: moe, the routed experts to NVFP4; all-linear, every GEMM weight "
                     "with a scale in the source)");
  const bool compressed_tensors = options.format == ConvertFormat::CompressedTensors;
  if (compressed_tensors && options.numerics == ConvertNumerics::ModelOpt)
    throw InputError("--numerics modelopt writes ModelOpt's scales, which --format compressed-tensors cannot hold; "
                     "use --numerics compressed-tensors (or cast for MXFP4 experts)");
  if (!compressed_tensors && options.numerics == ConvertNumerics::CompressedTensors)
    throw InputError("--numerics compressed-tensors needs --format compressed-tensors");
  const std::string scales_name(scale_method_name(options.scales));
  if (compressed_tensors && options.scales != Nvfp4ScaleMethod::Max)
    throw InputError("--scales " + scales_name + " writes ModelOpt's static block scales, which --format "
                     "compressed-tensors does not hold; use --format modelopt (or --scales max)");
  if (options.scales == Nvfp4ScaleMethod::Hessian && !options.hessian_path)
    throw InputError("--scales hessian needs --hessian FILE: the XᵀX statistics of calibrate --hessian");
  if (options.gptq && !options.hessian_path)
    throw InputError("--gptq needs --hessian DIR: the full XᵀX of calibrate --hessian DIR --hessian-mode full");
  if (options.scales != Nvfp4ScaleMethod::Hessian && !options.gptq && options.hessian_path)
    throw InputError("--hessian " + *options.hessian_path + ": only --scales hessian and --gptq read it (this run has "
                     "--scales " + scales_name + ")");
  const bool full_statistics = options.hessian_path && std::filesystem::is_directory(*options.hessian_path);
  if (options.gptq && !full_statistics)
    throw InputError("--hessian " + *options.hessian_path + ": --gptq needs the full XᵀX, a directory that calibrate "
                     "--hessian DIR --hessian-mode full writes (this is a file: the diagonal blocks only)");
  if (options.gptq && (options.gptq_options.block == 0 || options.gptq_options.block % 16 != 0))
    throw InputError("--gptq-block " + std::to_string(options.gptq_options.block) + ": must be a positive multiple of 16");
  if (options.gptq && (!(options.gptq_options.damping >= 0.0) || !std::isfinite(options.gptq_options.damping)))
    throw InputError("--gptq-damping " + std::to_string(options.gptq_options.damping) + ": must be finite and >= 0");
  if (options.gptq_device == cuda::Device::Cuda && !options.gptq)
    throw InputError("--device cuda: only --gptq runs on the GPU in convert, and this run has no --gptq");
  if (!(options.hessian_damping >= 0.0) || !std::isfinite(options.hessian_damping))
    throw InputError("--hessian-damping " + std::to_string(options.hessian_damping) + ": must be finite and >= 0");
  const std::optional<std::regex> include = compile_regex(options.include, "--include");
  const std::optional<std::regex> exclude = compile_regex(options.exclude, "--exclude");
  if (options.calib_path && options.weight_only)
    throw InputError("--calib and --weight-only exclude each other: --weight-only writes no input_scale");
  if (!options.calib_path && !options.weight_only)
    throw InputError("no --calib FILE: the NVFP4 experts need an input_scale from calibrated activation amax "
                     "(<module>.input_amax values); give --calib FILE, or --weight-only to write none");
  if (options.shard_bytes && *options.shard_bytes == 0) throw InputError("--shard-size must be positive");

  ConvertPlan plan;
  plan.src_dir = src_dir;
  SourceCheckpoint source = open_source_checkpoint(src_dir);
  const nlohmann::json source_files = source_files_manifest(source);

  const PairedSource paired = pair_source_tensors(source.shards);
  const std::vector<TensorRef>& refs = paired.refs;
  const std::map<std::string_view, SourceTensor>& source_of = paired.by_name;
  const WeightPairing& pairing = paired.pairing;
  std::map<std::string_view, const QuantizedWeight*> quantized;
  for (const QuantizedWeight& q : pairing.quantized) quantized.emplace(q.weight, &q);

  // The model family decides which weights are experts, GEMM weights, or never quantized.
  const std::string config_path = join_path(src_dir, io::kConfigFileName);
  const bool has_config = is_regular_file(config_path);
  std::optional<nlohmann::json> config_json;
  if (has_config) config_json = io::parse_strict_json(read_text_file(config_path), config_path);
  std::vector<std::string> tensor_names;
  for (const TensorRef& ref : refs) tensor_names.push_back(ref.name);
  const ModelDescriptor model = ModelDescriptor::detect(config_json ? &*config_json : nullptr, tensor_names);
  const bool v4 = model.family() == ModelFamily::DeepseekV4;
  plan.family = std::string(model.name());

  // The candidates: every weight with a scale in the source (FP8 blocks, MXFP4), every routed or
  // MTP expert matrix, and every GEMM weight of the family; all of them are "known" to the
  // calibration. The recipe, then --include and --exclude, pick which become NVFP4; the rest stay
  // as they are.
  std::vector<std::string> known_modules;
  std::vector<std::string> kept_scaled, kept_plain;  // modules of matrices left as they are
  std::vector<const QuantizedWeight*> kept_quantized;  // their weights, for kept_scaled
  std::map<std::string_view, size_t> module_of_weight;
  std::set<std::string_view> dropped_scales;
  bool any_mxfp4 = false, any_plain_expert = false, only_experts = true;
  for (const TensorRef& ref : refs) {
    // Experts stacked into one 3-D tensor (transformers' fused MoE parameters, Llama 4, GPT-OSS)
    // need a per-expert global scale the layouts here do not describe: say so rather than keep
    // them silently.
    if (is_float_dtype(ref.dtype) && ref.shape.size() == 3 && ref.name.find("experts") != std::string::npos) {
      plan.warnings.push_back(ref.file + ": tensor " + io::quote_name(ref.name) + ": " + io::shape_string(ref.shape) +
                              " holds several experts in one tensor, which convert does not quantize; kept as it is "
                              "(store the experts one per tensor, as the released checkpoints do)");
      continue;
    }
    if (!ref.name.ends_with(kWeightSuffix)) continue;
    const auto q = quantized.find(ref.name);
    const bool scaled = q != quantized.end();
    const std::string module = ref.name.substr(0, ref.name.size() - kWeightSuffix.size());
    const bool routed = model.is_routed_expert(module);
    const bool mtp_expert = !routed && model.is_mtp_expert(module);
    const bool plain_matrix = !scaled && is_float_dtype(ref.dtype) && ref.shape.size() == 2;
    const bool candidate = scaled || routed || mtp_expert || (plain_matrix && model.is_linear(module));
    if (!candidate && !plain_matrix) continue;
    if (candidate) known_modules.push_back(module);
    // A plain matrix that is no candidate becomes NVFP4 only when --include names it.
    bool selected = !candidate ? false
                    : options.recipe == "moe" ? routed || (mtp_expert && options.include_mtp_experts)
                                              : true;
    const bool included = include && std::regex_search(ref.name, *include);
    if (included) selected = true;
    if (exclude && std::regex_search(ref.name, *exclude)) selected = false;
    if (selected && model.is_always_kept(module)) {
      if (included)
        throw InputError(ref.file + ": tensor " + io::quote_name(ref.name) + ": --include selects a tensor that " +
                         std::string(model.name()) + " always keeps as it is (" +
                         std::string(model.always_kept_description()) + ")");
      selected = false;
    }
    const std::string where = ref.file + ": tensor " + io::quote_name(ref.name);
    int64_t cols = scaled ? q->second->logical_shape[1] : (ref.shape.size() == 2 ? ref.shape[1] : 0);
    if (selected && ref.shape.size() == 2 && cols % static_cast<int64_t>(kNvfp4BlockSize) != 0) {
      const std::string problem = where + ": has K = " + std::to_string(cols) +
                                  " columns, not a multiple of the NVFP4 block (16)";
      if (options.strict) throw InputError(problem + " (--strict)");
      plan.warnings.push_back(problem + "; kept as it is");
      selected = false;
    }
    if (!selected) {
      if (scaled) {
        kept_scaled.push_back(module);
        kept_quantized.push_back(q->second);
      } else {
        kept_plain.push_back(module);
      }
      continue;
    }
    if (!candidate) known_modules.push_back(module);

    Nvfp4Module m;
    m.name = module;
    m.weight = source_of.at(ref.name);
    if (scaled) {
      const Storage storage = q->second->storage;
      if (storage != Storage::Mxfp4 && storage != Storage::Fp8BlockE8M0 && storage != Storage::Fp8BlockF32)
        throw InputError(where + ": stored as " + std::string(storage_name(storage)) +
                         ", which convert does not read; only MXFP4, FP8 blocks or BF16/F16/F32 weights");
      m.storage = storage;
      m.scale = source_of.at(q->second->scale);
      m.rows = q->second->logical_shape[0];
      m.cols = q->second->logical_shape[1];
      dropped_scales.insert(q->second->scale);
      any_mxfp4 = any_mxfp4 || storage == Storage::Mxfp4;
    } else {
      if (!plain_matrix)
        throw InputError(where + ": is " + std::string(dtype_name(ref.dtype)) + " " + io::shape_string(ref.shape) +
                         " without a scale; an expert weight must be MXFP4 (I8 + E8M0 .scale), FP8 with a scale, "
                         "or a BF16/F16/F32 matrix");
      m.storage = Storage::Plain;
      m.rows = ref.shape[0];
      m.cols = ref.shape[1];
      any_plain_expert = any_plain_expert || routed || mtp_expert;
    }
    only_experts = only_experts && (routed || mtp_expert);
    module_of_weight.emplace(m.weight.info->name, plan.modules.size());
    plan.modules.push_back(std::move(m));
  }
  if (options.recipe == "moe" && !v4 &&
      std::none_of(plan.modules.begin(), plan.modules.end(), [&](const Nvfp4Module& m) {
        return model.is_routed_expert(m.name) || model.is_mtp_expert(m.name);
      }))
    throw InputError(src_dir + ": has no routed expert weights (" + std::string(model.name()) +
                     " model); --recipe moe converts only those: use --recipe all-linear");

  // Outside DeepSeek V4's own layout no engine reads FP8 blocks beside NVFP4 (ModelOpt's mixed
  // precision knows per-tensor FP8 only): FP8-block weights that stay are written as BF16, as
  // ModelOpt's DeepSeek V3 exporter does. MXFP4 cannot stay either.
  std::map<std::string_view, const QuantizedWeight*> dequantized;
  if (!v4) {
    for (const QuantizedWeight* q : kept_quantized) {
      if (q->storage != Storage::Fp8BlockE8M0 && q->storage != Storage::Fp8BlockF32)
        throw InputError(source_of.at(q->weight).file->path() + ": tensor " + io::quote_name(q->weight) + ": stays " +
                         std::string(storage_name(q->storage)) + ", which a " + std::string(model.name()) +
                         " NVFP4 checkpoint cannot declare; convert it (--include) or dequantize the source first");
      dequantized.emplace(q->weight, q);
      dropped_scales.insert(q->scale);
    }
    kept_plain.insert(kept_plain.end(), kept_scaled.begin(), kept_scaled.end());
    kept_scaled.clear();
  }
  if (compressed_tensors && !kept_scaled.empty())
    throw InputError(kept_scaled.front() + ".weight: stays in its source format (FP8 blocks or MXFP4), which the "
                     "compressed-tensors layout cannot describe; convert every scaled weight (--recipe all-linear, "
                     "no --exclude of them) or write --format modelopt");

  plan.format = options.format;
  // ModelOpt's V4 exporter runs on the CPU (a true division for weight_scale_2); its DeepSeek V3
  // script and its general exporter compute it on the GPU (a multiply by the reciprocal).
  plan.quantizer = compressed_tensors ? Nvfp4Numerics::CompressedTensors
                   : v4               ? Nvfp4Numerics::ModelOpt
                                      : Nvfp4Numerics::ModelOptCuda;
  plan.numerics = options.numerics;
  if (plan.numerics == ConvertNumerics::Auto && !plan.modules.empty())
    plan.numerics = any_mxfp4 ? ConvertNumerics::Cast
                              : (compressed_tensors ? ConvertNumerics::CompressedTensors : ConvertNumerics::ModelOpt);
  if (plan.numerics == ConvertNumerics::Cast && any_plain_expert) {
    const auto plain = std::find_if(plan.modules.begin(), plan.modules.end(),
                                    [](const Nvfp4Module& m) { return m.storage == Storage::Plain; });
    throw InputError(plain->weight.file->path() + ": tensor " + io::quote_name(plain->weight.info->name) +
                     ": --numerics cast needs MXFP4 experts; this one is " +
                     std::string(dtype_name(plain->weight.info->dtype)) + " (use --numerics modelopt)");
  }
  for (Nvfp4Module& m : plan.modules)
    m.action = m.storage == Storage::Mxfp4 && plan.numerics == ConvertNumerics::Cast ? ConvertAction::Transcode
                                                                                       : ConvertAction::Quantize;
  plan.scales = options.scales;
  if (options.scales != Nvfp4ScaleMethod::Max) {
    const auto cast = static_cast<size_t>(std::count_if(plan.modules.begin(), plan.modules.end(), [](const Nvfp4Module& m) {
      return m.action == ConvertAction::Transcode;
    }));
    if (cast)
      plan.warnings.push_back("--scales " + scales_name + " applies to requantized weights only; the " +
                              std::to_string(cast) + " MXFP4 expert matri" + (cast == 1 ? "x is" : "ces are") +
                              " cast losslessly with the scales they have (an FP4 source has nothing to search)");
  }

  // Fused groups (w1/w3, wq_a/wkv, q/k/v...), wherever their members are stored: the engines load
  // them into one GEMM of one format with one global and one input scale, so a group converts
  // whole or not at all.
  std::map<std::string, size_t> by_name;
  for (size_t i = 0; i < plan.modules.size(); ++i) by_name.emplace(plan.modules[i].name, i);
  const std::set<std::string> left_modules = [&] {
    std::set<std::string> left(kept_plain.begin(), kept_plain.end());
    left.insert(kept_scaled.begin(), kept_scaled.end());
    return left;
  }();
  for (Nvfp4Module& m : plan.modules) {
    const std::string where = m.weight.file->path() + ": tensor " + io::quote_name(m.weight.info->name);
    for (const std::string& sibling : fused_siblings_of(m.name)) {
      if (left_modules.count(sibling))
        throw InputError(where + ": becomes NVFP4 but its fused sibling " + io::quote_name(sibling + ".weight") +
                         " stays as it is; the engines load both into one GEMM of one format, so select or "
                         "exclude both (--include/--exclude)");
      const auto p = by_name.find(sibling);
      if (p == by_name.end()) continue;
      if (plan.modules[p->second].action != m.action)
        throw InputError(where + ": is stored as " + std::string(storage_name(m.storage)) + " but its fused sibling " +
                         io::quote_name(sibling + ".weight") + " as " +
                         std::string(storage_name(plan.modules[p->second].storage)) +
                         "; they need one global scale, which a lossless cast and a requantization cannot share");
      m.fused.push_back(p->second);
    }
  }

  if (full_statistics) {
    plan.full_statistics = open_full_hessian_statistics(*options.hessian_path, src_dir, options.calib_path);
    plan.hessian_damping = options.hessian_damping;
    plan.gptq = options.gptq;
    plan.gptq_options = options.gptq_options;
    size_t without = 0;
    for (Nvfp4Module& m : plan.modules) {
      if (m.action != ConvertAction::Quantize) continue;
      m.full_xtx = plan.full_statistics->has(m.name);
      if (m.full_xtx) continue;
      const bool mse = options.scales == Nvfp4ScaleMethod::Hessian && options.hessian_missing_mse;
      if (options.gptq && !options.gptq_missing_rtn)
        throw InputError(*options.hessian_path + ": no XᵀX of " + io::quote_name(m.name) + " for weight " +
                         io::quote_name(m.weight.info->name) + ": --gptq needs the full XᵀX of every weight it "
                         "requantizes (--gptq-missing rtn rounds such weights without compensation)");
      if (options.scales == Nvfp4ScaleMethod::Hessian && !mse)
        throw InputError(*options.hessian_path + ": no XᵀX of " + io::quote_name(m.name) + " for weight " +
                         io::quote_name(m.weight.info->name) + ": --scales hessian needs the XᵀX statistics of every "
                         "weight it requantizes (--hessian-missing mse gives such weights mse scales)");
      ++without;
    }
    if (options.gptq) warn_of_underdetermined_xtx(plan, *options.hessian_path);
    if (without)
      plan.warnings.push_back(std::to_string(without) + " requantized weight" + (without == 1 ? " has" : "s have") +
                              " no XᵀX in " + *options.hessian_path + ": " +
                              (options.scales == Nvfp4ScaleMethod::Hessian ? "mse scales" : "their scales") +
                              (options.gptq ? ", plain rounding" : "") + " (scale_methods in " +
                              std::string(kConvertPlanFileName) + ")");
  }
  if (options.scales == Nvfp4ScaleMethod::Hessian && !full_statistics) {
    plan.hessian_file = open_hessian_statistics(*options.hessian_path, src_dir, options.calib_path);
    plan.hessian_damping = options.hessian_damping;
    size_t without = 0;
    for (Nvfp4Module& m : plan.modules) {
      if (m.action != ConvertAction::Quantize) continue;
      if (options.hessian_missing_mse && !has_hessian_blocks(*plan.hessian_file, m.name)) {
        ++without;  // scales from mse, recorded as such in scale_methods
        continue;
      }
      m.xtx_blocks = {plan.hessian_file.get(),
                      &hessian_blocks_for(*plan.hessian_file, m.name, m.weight.info->name, m.rows, m.cols)};
    }
    if (without)
      plan.warnings.push_back("--hessian-missing mse: " + std::to_string(without) + " requantized weight" +
                              (without == 1 ? " has" : "s have") + " no XᵀX statistics in " + *options.hessian_path +
                              " and get mse scales (scale_methods in " + std::string(kConvertPlanFileName) + ")");
  }

  std::optional<Calibration> calibration;
  if (options.calib_path) {
    calibration = load_calibration(*options.calib_path);
    std::vector<std::string> names;
    for (const Nvfp4Module& m : plan.modules) names.push_back(m.name);
    const InputAmax amax = resolve_input_amax(*calibration, names, known_modules);
    for (Nvfp4Module& m : plan.modules) m.input_amax = amax.by_module.at(m.name);
    plan.input_fallbacks = amax.fallbacks;
    // Values for modules that stay as they are (attention and shared experts under --recipe moe)
    // are legitimate calibration output; say that they go unused rather than refuse them.
    std::vector<std::string> unused;
    for (const auto& [module, value] : calibration->input_amax)
      if (!by_name.count(module)) unused.push_back(module);
    if (!unused.empty())
      plan.warnings.push_back(*options.calib_path + ": " + std::to_string(unused.size()) + " input amax value" +
                              (unused.size() > 1 ? "s" : "") + " not used (" + io::quote_name(unused.front()) +
                              (unused.size() > 1 ? ", ..." : "") + "): those modules stay in their source format" +
                              (options.recipe == "moe" ? " (--recipe all-linear converts them)" : ""));
  }

  // Output tensors, shard by shard in source order: kept tensors and NVFP4 weights in place of
  // the source's, the added scales after the shard's other tensors (as the exporter's weight_map).
  std::vector<std::vector<size_t>> by_source_file(source.shards.size());
  for (size_t f = 0; f < source.shards.size(); ++f) {
    std::vector<ConvertTensor> added;
    for (const io::TensorInfo& t : source.shards[f]->tensors()) {
      const SourceTensor src{source.shards[f].get(), &t};
      if (dropped_scales.count(t.name)) {
        ++plan.drop.tensors;
        plan.drop.input_bytes += t.nbytes();
        continue;
      }
      if (const auto d = dequantized.find(t.name); d != dequantized.end()) {
        const QuantizedWeight& q = *d->second;
        ConvertTensor c;
        c.output = output_info(t.name, DType::BF16, q.logical_shape);
        c.kind = ConvertOutput::Dequantized;
        c.source = src;
        c.scale = source_of.at(q.scale);
        c.storage = q.storage;
        ++plan.dequantize.tensors;
        plan.dequantize.input_bytes += t.nbytes() + c.scale.info->nbytes();
        ++plan.dequantize.outputs;
        plan.dequantize.output_bytes += c.output.nbytes();
        by_source_file[f].push_back(plan.tensors.size());
        plan.tensors.push_back(std::move(c));
        continue;
      }
      const auto mod = module_of_weight.find(t.name);
      if (mod == module_of_weight.end()) {
        ConvertTensor c;
        c.output = io::TensorInfo{t.name, t.dtype, t.shape, 0, t.nbytes()};
        c.source = src;
        ++plan.keep.tensors;
        plan.keep.input_bytes += t.nbytes();
        ++plan.keep.outputs;
        plan.keep.output_bytes += t.nbytes();
        by_source_file[f].push_back(plan.tensors.size());
        plan.tensors.push_back(std::move(c));
        continue;
      }
      const Nvfp4Module& m = plan.modules[mod->second];
      ConvertActionCount& count = m.action == ConvertAction::Transcode ? plan.transcode : plan.quantize;
      ++count.tensors;
      count.input_bytes += m.input_bytes();
      auto add = [&](ConvertOutput kind, std::string suffix, DType dtype, std::vector<int64_t> shape, bool in_place) {
        ConvertTensor c;
        c.output = output_info(m.name + suffix, dtype, std::move(shape));
        c.kind = kind;
        c.module = mod->second;
        ++count.outputs;
        count.output_bytes += c.output.nbytes();
        if (!in_place) {
          added.push_back(std::move(c));
          return;
        }
        by_source_file[f].push_back(plan.tensors.size());
        plan.tensors.push_back(std::move(c));
      };
      if (compressed_tensors) {
        add(ConvertOutput::Weight, ".weight_packed", DType::U8, {m.rows, m.cols / 2}, true);
        add(ConvertOutput::BlockScale, ".weight_scale", DType::F8_E4M3, {m.rows, m.cols / 16}, false);
        add(ConvertOutput::GlobalScale, ".weight_global_scale", DType::F32, {1}, false);
        if (m.input_amax) add(ConvertOutput::InputScale, ".input_global_scale", DType::F32, {1}, false);
      } else {
        add(ConvertOutput::Weight, ".weight", DType::U8, {m.rows, m.cols / 2}, true);
        add(ConvertOutput::BlockScale, ".weight_scale", DType::F8_E4M3, {m.rows, m.cols / 16}, false);
        add(ConvertOutput::GlobalScale, ".weight_scale_2", DType::F32, {}, false);
        if (m.input_amax) add(ConvertOutput::InputScale, ".input_scale", DType::F32, {}, false);
      }
    }
    for (ConvertTensor& c : added) {
      by_source_file[f].push_back(plan.tensors.size());
      plan.tensors.push_back(std::move(c));
    }
  }

  if (options.shard_bytes) {
    std::vector<io::TensorInfo> outputs;
    outputs.reserve(plan.tensors.size());
    for (const ConvertTensor& t : plan.tensors) outputs.push_back(t.output);
    plan.shards = io::plan_shards(outputs, *options.shard_bytes);
  } else {
    // The source's shards, names and tensor assignment (as the exporter writes them).
    for (size_t f = 0; f < source.shards.size(); ++f) {
      if (by_source_file[f].empty()) continue;
      io::PlannedShard shard;
      shard.file = source.files[f];
      shard.tensors = by_source_file[f];
      for (size_t i : shard.tensors) shard.bytes += plan.tensors[i].output.nbytes();
      plan.shards.push_back(std::move(shard));
    }
  }

  plan.layout_files = {std::string(io::kIndexFileName)};
  if (has_config) plan.layout_files.push_back(std::string(io::kConfigFileName));
  if (!compressed_tensors) plan.layout_files.push_back(std::string(kHfQuantConfigFileName));
  if (v4 && !compressed_tensors && options.recipe == "moe" && only_experts) {
    // NVIDIA's V4 release layout: the routed experts NVFP4, the rest as in the source.
    plan.v4_release_layout = true;
    ModeloptV4Layout layout;
    layout.includes_mtp_experts = options.include_mtp_experts;
    for (const Nvfp4Module& m : plan.modules) {
      const std::string container = expert_container(m.name);
      if (std::find(layout.quantized_layers.begin(), layout.quantized_layers.end(), container) ==
          layout.quantized_layers.end())
        layout.quantized_layers.push_back(container);
    }
    std::stable_sort(layout.quantized_layers.begin(), layout.quantized_layers.end(),
                     [](const std::string& a, const std::string& b) { return container_order(a) < container_order(b); });
    if (has_config) plan.config_text = layout.config_json(config_json->dump(), config_path);
    plan.hf_quant_config_text = layout.hf_quant_config_json();
  } else {
    Nvfp4Layout layout;
    layout.compressed_tensors = compressed_tensors;
    layout.weight_only = options.weight_only;
    layout.mixed = !kept_scaled.empty();
    std::vector<std::string> quantized_names;
    for (const Nvfp4Module& m : plan.modules) {
      const bool expert = m.name.find(".experts.") != std::string::npos;
      const std::string layer = expert ? expert_container(m.name) : m.name;
      if (std::find(layout.quantized_layers.begin(), layout.quantized_layers.end(), layer) ==
          layout.quantized_layers.end())
        layout.quantized_layers.push_back(layer);
      quantized_names.push_back(m.name);
    }
    std::vector<std::string> left = kept_plain;
    left.insert(left.end(), kept_scaled.begin(), kept_scaled.end());
    layout.exclude_modules = summarize_modules(left, quantized_names, compressed_tensors);
    if (has_config) plan.config_text = layout.config_json(config_json->dump(), config_path);
    if (!compressed_tensors) plan.hf_quant_config_text = layout.hf_quant_config_json();
  }

  plan.extra_files = list_extra_files(src_dir, dst_dir, source,
                                      {std::string(io::kConfigFileName), std::string(kHfQuantConfigFileName)});
  for (const io::PlannedShard& shard : plan.shards)
    if (std::binary_search(plan.extra_files.begin(), plan.extra_files.end(), shard.file))
      throw InputError(join_path(src_dir, shard.file) + ": is not a shard of the source checkpoint, but the output's shard " +
                       io::quote_name(shard.file) + " has its name; move it out of the way");
  plan.source_files = std::move(source.shards);

  // The manifest: enough to tell, on --resume, that the same source and options give the same output.
  Fingerprint layout_print;
  nlohmann::json shards = nlohmann::json::array();
  for (const io::PlannedShard& shard : plan.shards) {
    layout_print.add(shard.file);
    for (size_t i : shard.tensors) {
      const io::TensorInfo& t = plan.tensors[i].output;
      layout_print.add(t.name);
      layout_print.add(dtype_name(t.dtype));
      layout_print.add_shape(t.shape);
    }
    shards.push_back({{"file", shard.file}, {"tensors", shard.tensors.size()}, {"bytes", shard.bytes}});
  }
  plan.manifest = {
      {"format", kConvertManifestFormat},
      {"complete", false},
      {"source", {{"files", source_files}}},
      {"options",
       {{"shard_bytes", options.shard_bytes ? nlohmann::json(*options.shard_bytes) : nlohmann::json("source")},
        {"numerics", convert_numerics_name(plan.numerics)},
        {"recipe", options.recipe},
        {"format", convert_format_name(options.format)},
        {"include", options.include ? nlohmann::json(*options.include) : nlohmann::json(nullptr)},
        {"exclude", options.exclude ? nlohmann::json(*options.exclude) : nlohmann::json(nullptr)},
        {"strict", options.strict},
        {"calibration", calibration ? nlohmann::json(calibration->fingerprint) : nlohmann::json(nullptr)},
        {"weight_only", options.weight_only},
        {"include_mtp_experts", options.include_mtp_experts}}},
      {"output",
       {{"tensors", plan.tensors.size()}, {"bytes", plan.output_bytes()}, {"layout", layout_print.hex()},
        {"shards", shards}}}};
  // Max scaling (the default) records nothing, so earlier outputs resume as they did.
  if (options.scales != Nvfp4ScaleMethod::Max) plan.manifest["options"]["scales"] = scales_name;
  // Which method made each NVFP4 weight, for verify's report: not compared on --resume (it follows
  // from the options that are).
  nlohmann::json methods = nlohmann::json::object();
  // A weight without statistics: mse scales for hessian, no compensation for GPTQ.
  for (const Nvfp4Module& m : plan.modules) {
    if (m.action == ConvertAction::Transcode) {
      methods[m.weight.info->name] = "cast";
      continue;
    }
    const bool has_statistics = plan.full_statistics ? m.full_xtx : m.xtx_blocks.info != nullptr;
    const std::string base = options.scales == Nvfp4ScaleMethod::Hessian && !has_statistics
                                 ? std::string(scale_method_name(Nvfp4ScaleMethod::Mse))
                                 : scales_name;
    methods[m.weight.info->name] = plan.gptq && m.full_xtx ? base + "+gptq" : base;
  }
  plan.manifest["scale_methods"] = std::move(methods);
  if (plan.hessian_file || plan.full_statistics) {
    std::string run;
    if (plan.full_statistics) {
      run = plan.full_statistics->fingerprint();
    } else {
      const auto& meta = plan.hessian_file->header().metadata;
      const auto it = meta.find("fingerprint");
      run = it == meta.end() ? "" : it->second;
    }
    plan.manifest["options"]["hessian"] = run;
    if (options.scales == Nvfp4ScaleMethod::Hessian) {
      plan.manifest["options"]["hessian_damping"] = options.hessian_damping;
      if (options.hessian_missing_mse) plan.manifest["options"]["hessian_missing"] = "mse";
    }
  }
  if (plan.gptq)
    plan.manifest["options"]["gptq"] = {{"damping", options.gptq_options.damping},
                                        {"block", options.gptq_options.block},
                                        {"act_order", options.gptq_options.act_order},
                                        {"missing", options.gptq_missing_rtn ? "rtn" : "error"}};
  // GPU codes differ from the CPU's (F32 against F64): a run resumes only on the device it started
  // on. The CPU leaves the key out, so plan files of earlier versions still match.
  if (plan.gptq && options.gptq_device == cuda::Device::Cuda) plan.manifest["options"]["gptq"]["device"] = "cuda";
  return plan;
}

}  // namespace fp4kit
