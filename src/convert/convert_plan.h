#pragma once
// What `convert` will write, decided from the source checkpoint's headers, the calibration file
// and the options alone: every output tensor with its source, the NVFP4 expert modules with their
// w1/w3 partners and input amax, the output shards, the JSON files, the files to copy, and the
// manifest a resumed run compares against. Planning reads no weight data and writes nothing;
// every input problem it finds is an InputError naming the file and the tensor.
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/dequant_plan.h"
#include "calib/xtx_full_file.h"
#include "convert/output_directory.h"
#include "cuda/device.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_gptq.h"
#include "formats/nvfp4_hessian_sweep.h"
#include "formats/nvfp4_scale_search.h"
#include "io/safetensors_file.h"
#include "io/shard_plan.h"

namespace fp4kit {

// How MXFP4 experts become NVFP4. Cast: the exporter's lossless closed-form cast
// (--cast_mxfp4_to_nvfp4). ModelOpt: its default, dequantize to BF16 and requantize from the amax.
// CompressedTensors: llm-compressor's NVFP4 arithmetic (only with that layout). Auto: Cast for
// MXFP4 experts, the layout's own quantizer (ModelOpt or compressed-tensors) for everything else.
enum class ConvertNumerics : uint8_t { Auto, Cast, ModelOpt, CompressedTensors };
std::string_view convert_numerics_name(ConvertNumerics);
std::optional<ConvertNumerics> convert_numerics_from_name(std::string_view);

// The output's layout: ModelOpt's (weight, weight_scale, weight_scale_2, input_scale;
// hf_quant_config.json) or compressed-tensors' nvfp4-pack-quantized (weight_packed, weight_scale,
// weight_global_scale, input_global_scale; config.json only).
enum class ConvertFormat : uint8_t { ModelOpt, CompressedTensors };
std::string_view convert_format_name(ConvertFormat);  // "modelopt", "compressed-tensors"
std::optional<ConvertFormat> convert_format_from_name(std::string_view);

struct ConvertOptions {
  ConvertNumerics numerics = ConvertNumerics::Auto;
  ConvertFormat format = ConvertFormat::ModelOpt;
  // How the block scales of requantized weights are chosen (max: ModelOpt's default; mse and
  // four-over-six: searched, ModelOpt layout only). MXFP4 experts that are cast keep the cast's scales.
  Nvfp4ScaleMethod scales = Nvfp4ScaleMethod::Max;
  // hessian scales: the XᵀX statistics of calibrate --hessian, and λ of the damping λ·mean(diag).
  std::optional<std::string> hessian_path;
  double hessian_damping = kDefaultHessianDamping;
  // A requantized weight without statistics (e.g. V4's MTP block, which calibrate does not run):
  // false refuses it, true gives it mse scales and lists it in the plan's warnings.
  bool hessian_missing_mse = false;
  // GPTQ's error compensation on the codes of requantized weights after their block scales are
  // chosen (formats/nvfp4_gptq.h), with the full XᵀX of calibrate --hessian DIR --hessian-mode full
  // (hessian_path). A weight without its XᵀX: refused, or (gptq_missing_rtn) plain rounding.
  bool gptq = false;
  GptqOptions gptq_options;
  bool gptq_missing_rtn = false;
  // Where GPTQ runs (the rest of convert runs on the CPU): the CPU (F64, the reference), or the GPU
  // (convert/gptq_gpu.h: F32, the same decisions, codes close to the CPU's but not identical; the
  // caller checks first with cuda::require_device()). Recorded in the plan file with the GPTQ options.
  cuda::Device gptq_device = cuda::Device::Cpu;
  // moe: routed experts to NVFP4, everything else kept. all-linear: every GEMM weight that has a
  // scale in the source (attention, shared experts, indexer wq_b, MTP projections and experts).
  std::string recipe = "moe";
  std::optional<std::string> include;      // regex over weight names: add matching matrices
  std::optional<std::string> exclude;      // regex over weight names: keep matching ones as they are
  std::optional<std::string> calib_path;   // required unless weight_only
  bool weight_only = false;                // no input_scale
  bool include_mtp_experts = false;        // recipe moe: the MTP block's experts too
  std::optional<uint64_t> shard_bytes;     // nullopt: the source's shards, names and assignment
  bool allow_nonfinite = false;
  bool strict = false;                     // a selected matrix with K % 16 != 0 fails instead of being kept
  unsigned threads = 1;
  // Read the source and write the shards around the page cache where the file system allows
  // (io/direct_io.h); the bytes are the same either way.
  bool direct_io = true;
  bool resume = false;
  bool force = false;                      // empty a non-empty destination first
};

// What happens to a source tensor. Dequantize: an FP8-block weight that stays unquantized in a
// layout that cannot declare FP8 blocks (other families than DeepSeek V4) is written as BF16 with
// DeepSeek's official dequant, as ModelOpt's DeepSeek V3 exporter writes it.
enum class ConvertAction : uint8_t { Keep, Drop, Quantize, Transcode, Dequantize };
std::string_view convert_action_name(ConvertAction);  // "keep", "drop", "quantize", "transcode", "dequantize"
inline constexpr ConvertAction kConvertActions[] = {ConvertAction::Quantize, ConvertAction::Transcode,
                                                    ConvertAction::Dequantize, ConvertAction::Keep,
                                                    ConvertAction::Drop};

// One weight matrix that becomes NVFP4: a routed expert, or with all-linear any scaled GEMM weight.
struct Nvfp4Module {
  std::string name;               // "layers.0.ffn.experts.3.w1", "layers.0.attn.wq_a"
  ConvertAction action = ConvertAction::Quantize;  // Transcode: the lossless cast
  Storage storage = Storage::Plain;  // Mxfp4, Fp8BlockE8M0, Fp8BlockF32, or Plain (BF16/F16/F32)
  SourceTensor weight, scale;     // scale: quantized sources only
  int64_t rows = 0, cols = 0;     // logical [N, K]
  static constexpr size_t kNone = std::numeric_limits<size_t>::max();
  // The siblings sharing its global and input scale (w1/w3, q/k/v...), wherever they are stored.
  std::vector<size_t> fused;
  std::optional<float> input_amax;
  SourceTensor xtx_blocks;        // hessian scales: its `<module>.xtx_blocks` in the statistics file
  bool full_xtx = false;          // the full statistics (ConvertPlan::full_statistics) hold its XᵀX
  uint64_t input_bytes() const;
};

// What an output tensor holds. Dequantized: a kept FP8-block weight written as BF16.
enum class ConvertOutput : uint8_t { Copy, Weight, BlockScale, GlobalScale, InputScale, Dequantized };

struct ConvertTensor {
  io::TensorInfo output;  // name, dtype and shape as written; begin = 0, end = byte size
  ConvertOutput kind = ConvertOutput::Copy;
  SourceTensor source;                 // Copy, Dequantized (the weight)
  SourceTensor scale;                  // Dequantized
  Storage storage = Storage::Plain;    // Dequantized: Fp8BlockE8M0 or Fp8BlockF32
  size_t module = Nvfp4Module::kNone;  // the NVFP4 outputs
};

struct ConvertActionCount {
  size_t tensors = 0;        // source tensors
  uint64_t input_bytes = 0;  // their bytes in the source (a weight's scale counts with it)
  size_t outputs = 0;        // output tensors they give
  uint64_t output_bytes = 0;
};

struct ConvertPlan {
  std::string src_dir;
  ConvertNumerics numerics = ConvertNumerics::Auto;  // resolved (never Auto when modules exist)
  ConvertFormat format = ConvertFormat::ModelOpt;
  Nvfp4Numerics quantizer = Nvfp4Numerics::ModelOpt;  // for modules that are not cast
  Nvfp4ScaleMethod scales = Nvfp4ScaleMethod::Max;     // their block scales
  std::unique_ptr<io::SafetensorsFile> hessian_file;   // hessian scales: the XᵀX statistics
  double hessian_damping = kDefaultHessianDamping;
  // The full XᵀX (a --hessian directory): GPTQ's, and the diagonal blocks of hessian scales.
  std::optional<XtxFullStatistics> full_statistics;
  bool gptq = false;
  GptqOptions gptq_options;
  std::vector<std::unique_ptr<io::SafetensorsFile>> source_files;  // in name order
  std::vector<Nvfp4Module> modules;
  std::vector<ConvertTensor> tensors;    // by source file, then the source's order; new keys last
  std::vector<io::PlannedShard> shards;  // indices into `tensors`
  ConvertActionCount keep, drop, quantize, transcode, dequantize;
  std::string family;                          // model_family_name of the source
  std::vector<std::string> input_fallbacks;    // modules whose input amax is their projection's fallback
  std::vector<std::string> warnings;           // one line each: selected matrices kept (K % 16 != 0)
  std::vector<std::string> layout_files;       // the JSON files written beside the shards
  bool v4_release_layout = false;              // NVIDIA's V4 NVFP4 release layout (recipe moe, ModelOpt)
  std::optional<std::string> config_text;      // config.json, if the source has one
  std::string hf_quant_config_text;
  std::vector<std::string> extra_files;        // relative to src_dir, copied verbatim, sorted
  nlohmann::json manifest;

  const ConvertActionCount& count(ConvertAction) const;
  uint64_t input_bytes() const;   // every source tensor
  uint64_t output_bytes() const;  // every output tensor
  io::CheckpointIndex index() const;  // total_size: the true output size
};

// InputError for every problem plan_dequant reports, plus: an unknown recipe; a bad regex;
// --numerics cast on experts that are not MXFP4; FP8 experts; with `strict`, a K not a multiple
// of 16 (else that matrix is kept, with a warning); no calibration without weight_only; every
// calibration problem (calibration.h); a format/numerics mix no engine reads; searched scales with
// the compressed-tensors layout; hessian scales without --hessian or with statistics of another
// checkpoint or calibration run, or without the statistics of a requantized weight
// (convert/hessian_statistics.h); --hessian without hessian scales or --gptq; --gptq without the
// full XᵀX of every requantized weight (unless gptq_missing_rtn), with a block size that is not a
// positive multiple of 16 or a damping that is not finite and >= 0.
ConvertPlan plan_convert(const std::string& src_dir, const std::string& dst_dir, const ConvertOptions& options);

const JobPlanFile& convert_plan_file();
inline constexpr std::string_view kConvertManifestFormat = "fp4kit-convert-plan/1";
inline constexpr std::string_view kConvertPlanFileName = ".fp4kit-convert.json";

}  // namespace fp4kit
