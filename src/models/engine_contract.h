#pragma once
// What a serving engine's loader does with an NVFP4 checkpoint, as data written from the engine's
// source: which checkpoint names it consumes and into which of its parameters, in which storage
// format (and so with which tensor suffixes), and which config fields it reads from which file.
// `verify` walks a checkpoint through these tables (verify/engine_contract_check.h); the tables
// themselves are in engine_contracts_deepseek_v4.cpp, engine_contracts_deepseek_v3.cpp and
// engine_contracts_llama.cpp with the repository, file and commit each fact was read from. Facts not
// confirmed at a source say so in their `why`.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace fp4kit {

enum class Engine : uint8_t { Vllm, Sglang, Trtllm };
inline constexpr std::array<Engine, 3> kAllEngines{Engine::Vllm, Engine::Sglang, Engine::Trtllm};
std::string_view engine_name(Engine);  // "vllm", "sglang", "trtllm"
std::optional<Engine> engine_from_name(std::string_view);

// How the loader builds the parameter a checkpoint module fills, which fixes the tensors it reads:
//  Plain        the tensor itself (the row's pattern is the whole tensor name);
//  Fp8Block     .weight (F8_E4M3) + .scale (E8M0 128x128 blocks, renamed weight_scale_inv);
//  RoutedExpert NVFP4 (.weight, .weight_scale, .weight_scale_2, .input_scale) when config.json's
//               quantization_config.moe_quant_algo is "NVFP4", else MXFP4 (.weight, .scale).
enum class LoadFormat : uint8_t { Plain, Fp8Block, RoutedExpert };

// One checkpoint module (or plain tensor) and the parameter each engine loads it into ("" where
// the engine has no parameter for it).
struct LoadRow {
  std::string_view pattern;  // ECMAScript regex over the DeepSeek-native name (module, or tensor for Plain)
  LoadFormat format;
  std::array<std::string_view, kAllEngines.size()> parameter;  // by Engine; "{proj}" = w13|w2, "{suffix}" = tensor suffix
};

// What a loader needs of a config field. Pointers are JSON pointers into the named file.
enum class ConfigNeed : uint8_t {
  Equals,       // the field holds `value` (JSON text)
  OneOf,        // the field holds one of the members of `value` (a JSON array)
  AbsentOrEquals,
  AbsentOrOneOf,
  LayerList,    // an integer list with at least num_hidden_layers entries (indexed per layer)
  FlatObject,   // absent, or an object none of whose values is an object (read as one flat dict)
  Present,
  StartsWithNoCase,  // a string that starts with `value` (a JSON string), compared lower-cased as the loader does
};

struct ConfigRequirement {
  std::string_view file;     // "config.json" or "hf_quant_config.json"
  std::string_view pointer;  // "/quantization_config/scale_fmt"
  ConfigNeed need;
  std::string_view value;    // JSON text for Equals / OneOf / AbsentOrEquals / AbsentOrOneOf
  std::string_view why;      // what the loader does with it (and where that was read)
  // The loader reads the field only when the file exists: a checkpoint without the file does not fail it.
  bool file_optional = false;
};

struct SourceRef {
  std::string_view repo, file, commit, what;
};

struct EngineContract {
  Engine engine;
  std::string_view model_type;  // config.json model_type the table is for
  std::vector<SourceRef> sources;
  std::vector<ConfigRequirement> config;
  // Checkpoint tensors its model loader skips (by name prefix), and why; they are not walked.
  std::vector<std::string_view> skipped_prefixes;
  std::string_view skipped_why;
  int64_t nvfp4_group = 16;       // block size of the NVFP4 MoE parameters it creates
  bool reads_input_scales = true;  // its NVFP4 MoE method is W4A4: input scales are parameters it fills
  std::string_view input_scales_why;
};

// The DeepSeek V4 checkpoint modules and what each engine loads them into (rows shared by all engines).
const std::vector<LoadRow>& deepseek_v4_load_rows();
// Per engine: sources, config fields, MoE parameter facts of its DeepSeek V4 loader.
const EngineContract& deepseek_v4_contract(Engine);

// ---- Families with Hugging Face names (DeepSeek V3, Llama-like) ----------------------------------
// These load through the engines' general quantization methods (ModelOpt's general layout,
// compressed-tensors), so one table per family says which modules the loader creates, which
// siblings it fuses into one parameter (keeping one per-tensor scale for all), and per engine which
// layouts it loads, which config fields it reads and which checkpoint tensors it skips. The
// parameters of a quantized module follow from the layout (engine_contract_check_hf.cpp).

enum class HfLayout : uint8_t { ModelOpt, CompressedTensors };

// A module as the engine's model creates it from config.json: a linear layer (its weight [N, K],
// quantized unless the config excludes it) or a plain tensor (norms, embeddings, router, biases).
struct LoaderModule {
  std::string name;  // "model.layers.0.self_attn.q_proj" (linear) or the whole tensor name (plain)
  bool linear = false;
  std::vector<int64_t> shape;
};

// Sibling modules one engine loads into one parameter: every member's global and input scale goes
// into one slot of a per-shard scale vector, of which the kernel keeps one value.
struct FusedRow {
  std::string_view pattern;  // ECMAScript regex over the module name; members share the text before the last '.'
  std::array<std::string_view, kAllEngines.size()> parameter;  // by Engine ("" where the engine does not fuse them)
};

// Which NVFP4 flavours of a layout the engine loads.
struct LayoutSupport {
  HfLayout layout;
  bool w4a4 = false;   // NVFP4 weights and activations (input scales)
  bool w4a16 = false;  // weight-only (W4A16_NVFP4, NVFP4A16)
  std::string_view not_loaded_why;  // why a flavour it does not load is refused or skipped
  // Read at source: the engine fails to load the flavours it does not load (verify fails them), rather
  // than their loading being untabled (verify skips the engine).
  bool refused = false;
};

// Linear modules the loader reads as a plain '.weight' whatever the quantization config says
// (their NVFP4 scales are never read, or the read expects another format): a checkpoint this engine
// loads must leave them unquantized.
struct UnquantizedOnlyRow {
  std::string_view pattern;  // ECMAScript regex over the module name
  std::string_view why;      // what the loader does with it (and where that was read)
};

// Linear modules whose per-tensor scales (global and input) the loader takes only as 0-d tensors:
// it loads two siblings into one single-slot parameter by keeping one of two 0-d scales, and any
// other shape is concatenated into more values than the parameter holds.
struct ZeroDimScaleRow {
  std::string_view pattern;  // ECMAScript regex over the module name
  std::string_view why;      // what the loader does with it (and where that was read)
};

struct HfEngineContract {
  Engine engine;
  std::vector<SourceRef> sources;
  std::vector<LayoutSupport> loads;
  // ModelOpt: the fields read when config.json has a quantization_config, and those read instead
  // when it has none (hf_quant_config.json); compressed-tensors: config.json's.
  std::vector<ConfigRequirement> modelopt_config, modelopt_config_without_inline, compressed_tensors_config;
  bool skips_mtp_layers = false;  // decoder layers >= num_hidden_layers belong to the MTP draft model
  std::string_view skipped_why;
  // DeepSeek V3: the router's e_score_correction_bias exists only with config.json topk_method noaux_tc.
  bool gate_bias_needs_noaux_tc = false;
  std::vector<UnquantizedOnlyRow> unquantized_only;
  std::vector<ZeroDimScaleRow> zero_dim_scales;
  // ModelOpt W4A16_NVFP4: when set, the engine's weight-only linear method creates no input_scale
  // parameter, so a linear's '.input_scale' loads into nothing (and this says what the loader does
  // with one); routed experts (modules under '.experts.<e>.') keep their optional input scale.
  std::string_view w4a16_linear_input_scale_why;
};

struct HfFamilyContract {
  std::string_view family;                    // "DeepSeek V3", "Llama-like"
  std::vector<std::string_view> model_types;  // config.json model_type values the table covers
  std::vector<FusedRow> fused;
  std::array<HfEngineContract, kAllEngines.size()> engines;  // by Engine
  // The modules the engine's model creates from config.json; throws std::runtime_error naming the
  // field when config.json cannot describe a model (missing or absurd sizes).
  std::vector<LoaderModule> (*modules)(const nlohmann::json& config, const HfEngineContract& engine);
};

// Config fields the engines' ModelOpt and compressed-tensors methods read, shared by the families'
// tables: vLLM's, SGLang's (ModelOptFp4Config) and TensorRT-LLM's (hf_quant_config.json only).
const std::vector<ConfigRequirement>& modelopt_inline_requirements();
const std::vector<ConfigRequirement>& modelopt_file_requirements();
const std::vector<ConfigRequirement>& compressed_tensors_requirements();
const std::vector<ConfigRequirement>& sglang_modelopt_inline_requirements();
const std::vector<ConfigRequirement>& sglang_modelopt_file_requirements();
const std::vector<ConfigRequirement>& sglang_compressed_tensors_requirements();
const std::vector<ConfigRequirement>& trtllm_modelopt_requirements();
// What TensorRT-LLM's W4A16_NVFP4 linear does with a checkpoint input scale, and why it refuses
// compressed-tensors NVFP4 (both families), with the sources each was read from.
extern const std::string_view kTrtllmW4a16InputScaleWhy, kTrtllmCompressedTensorsWhy;
const std::vector<SourceRef>& trtllm_modelopt_w4a16_sources();
const std::vector<SourceRef>& trtllm_compressed_tensors_sources();
// SGLang's compressed-tensors scheme selection and its weight-only NVFP4 schemes (both families).
const std::vector<SourceRef>& sglang_compressed_tensors_w4a16_sources();
inline std::vector<SourceRef> joined(std::vector<SourceRef> a, const std::vector<SourceRef>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const HfFamilyContract& deepseek_v3_contract();
const HfFamilyContract& llama_contract();

}  // namespace fp4kit
