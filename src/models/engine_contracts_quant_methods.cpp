// The config fields the engines' general NVFP4 quantization methods read (ModelOpt's general
// layout, compressed-tensors), shared by the DeepSeek V3 and Llama-like tables.
#include "models/engine_contract.h"

namespace fp4kit {

const std::vector<ConfigRequirement>& modelopt_inline_requirements() {
  static const std::vector<ConfigRequirement> r = {
      {"config.json", "/quantization_config/quant_method", ConfigNeed::Equals, R"("modelopt")",
       "ModelOptNvFp4Config.override_quantization_method takes a quant_method starting with modelopt (modelopt.py)"},
      {"config.json", "/quantization_config/quant_algo", ConfigNeed::OneOf, R"(["NVFP4","W4A16_NVFP4"])",
       "from_config raises \"Missing 'quant_algo'\"; NVFP4 builds ModelOptNvFp4LinearMethod, W4A16_NVFP4 the Marlin "
       "W4A16 method, anything else raises (modelopt.py)"},
  };
  return r;
}

const std::vector<ConfigRequirement>& modelopt_file_requirements() {
  static const std::vector<ConfigRequirement> r = {
      {"hf_quant_config.json", "/quantization/quant_algo", ConfigNeed::OneOf, R"(["NVFP4","W4A16_NVFP4"])",
       "the ModelOpt method is chosen from hf_quant_config.json's quantization.quant_algo when config.json has no "
       "quantization_config (modelopt.py get_config_filenames, from_config)"},
      {"hf_quant_config.json", "/quantization/group_size", ConfigNeed::Present, "",
       "ModelOptNvFp4Config._from_config raises without group_size, kv_cache_quant_algo and exclude_modules in "
       "hf_quant_config.json (modelopt.py)"},
      {"hf_quant_config.json", "/quantization/kv_cache_quant_algo", ConfigNeed::Present, "", "required by _from_config (modelopt.py)"},
      {"hf_quant_config.json", "/quantization/exclude_modules", ConfigNeed::Present, "", "required by _from_config (modelopt.py)"},
  };
  return r;
}

const std::vector<ConfigRequirement>& compressed_tensors_requirements() {
  static const std::vector<ConfigRequirement> r = {
      {"config.json", "/quantization_config/quant_method", ConfigNeed::Equals, R"("compressed-tensors")",
       "selects CompressedTensorsConfig, whose schemes CompressedTensorsW4A4Fp4 / W4A16Fp4 load NVFP4"},
      {"config.json", "/quantization_config/config_groups", ConfigNeed::Present, "",
       "the scheme of each Linear is read from its config group (not confirmed at a pinned source)"},
  };
  return r;
}

const std::vector<ConfigRequirement>& trtllm_modelopt_requirements() {
  static const std::vector<ConfigRequirement> r = {
      {"hf_quant_config.json", "/quantization/quant_algo", ConfigNeed::Equals, R"("NVFP4")",
       "TensorRT-LLM takes ModelOpt quantization from hf_quant_config.json (as for its DeepSeek V4 table: issue #16196, "
       "PR #16433; not read at source)"},
  };
  return r;
}

}  // namespace fp4kit
