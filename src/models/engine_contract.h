#pragma once
// What a serving engine's loader does with an NVFP4 checkpoint, as data written from the engine's
// source: which checkpoint names it consumes and into which of its parameters, in which storage
// format (and so with which tensor suffixes), and which config fields it reads from which file.
// `verify` walks a checkpoint through these tables (verify/engine_contract_check.h); the tables
// themselves are in engine_contracts_deepseek_v4.cpp with the repository, file and commit each fact
// was read from. Facts not confirmed at a source say so in their `why`.
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

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
  LayerList,    // an integer list with at least num_hidden_layers entries (indexed per layer)
  FlatObject,   // absent, or an object none of whose values is an object (read as one flat dict)
  Present,
};

struct ConfigRequirement {
  std::string_view file;     // "config.json" or "hf_quant_config.json"
  std::string_view pointer;  // "/quantization_config/scale_fmt"
  ConfigNeed need;
  std::string_view value;    // JSON text for Equals / OneOf / AbsentOrEquals
  std::string_view why;      // what the loader does with it (and where that was read)
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

}  // namespace fp4kit
