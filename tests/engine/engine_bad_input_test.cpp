// Bad input reaches the user as one clear line and exit code 2: a missing tensor (named), a token id
// outside the vocabulary, a config field out of range (named), and non-finite activations (naming
// the first layer whose output holds one).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "checkpoint_edit.h"
#include "engine/engine.h"
#include "engine/model_config.h"
#include "io/checkpoint_index.h"
#include "io/safetensors_file.h"
#include "engine_test_util.h"
#include "run_command.h"
#include "test_data.h"

namespace fp4kit::testing {
namespace {

std::string engine_error(const std::string& dir, const std::vector<int64_t>& ids) {
  try {
    engine::Engine eng(dir, {1, size_t{1} << 28, nullptr, false});
    eng.forward(ids, 1);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j;
  std::ifstream(dir + "/config.json") >> j;
  edit(j);
  std::ofstream(dir + "/config.json") << j.dump(2);
}

TEST(EngineBadInput, MissingTensorIsNamed) {
  const std::string dir = copy_tiny_checkpoint("engine-missing");
  const std::string name = "layers.2.attn.kv_norm.weight";
  rewrite_shard(shard_holding(dir, name), [&](io::TensorInfo& t) { return t.name != name; });
  auto index = io::CheckpointIndex::load(dir + "/model.safetensors.index.json");
  index.weight_map.erase(name);
  index.save(dir + "/model.safetensors.index.json");
  const std::string msg = engine_error(dir, {0, 5, 6});
  EXPECT_NE(msg.find(name), std::string::npos) << msg;
  const CommandResult r = run_fp4kit("run " + dir + " --ids \"0 5 6\"");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(name), std::string::npos) << r.output;
}

TEST(EngineBadInput, TokenIdOutsideVocabulary) {
  const std::string msg = engine_error(tiny_dir(), {0, 1024});
  EXPECT_NE(msg.find("1024"), std::string::npos) << msg;
  EXPECT_NE(msg.find("vocab"), std::string::npos) << msg;
  const CommandResult r = run_fp4kit("run " + tiny_dir() + " --ids \"0 3 -4\"");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("-4"), std::string::npos) << r.output;
}

TEST(EngineBadInput, ConfigFieldOutOfRangeIsNamed) {
  const std::pair<const char*, std::function<void(nlohmann::json&)>> cases[] = {
      {"num_experts_per_tok", [](nlohmann::json& j) { j["num_experts_per_tok"] = 9; }},
      {"compress_ratios", [](nlohmann::json& j) { j["compress_ratios"][1] = 5; }},
      {"rms_norm_eps", [](nlohmann::json& j) { j["rms_norm_eps"] = -1.0; }},
      {"qk_rope_head_dim", [](nlohmann::json& j) { j["qk_rope_head_dim"] = 63; }},
      {"scoring_func", [](nlohmann::json& j) { j["scoring_func"] = "softmax"; }},
  };
  for (const auto& [field, edit] : cases) {
    const std::string dir = fresh_temp_dir(std::string("engine-config-") + field);
    std::filesystem::copy_file(tiny_dir() + "/config.json", dir + "/config.json");
    edit_config(dir, edit);
    try {
      engine::ModelConfig::load(dir);
      ADD_FAILURE() << field << ": no error";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
    }
  }
}

TEST(EngineBadInput, NonFiniteActivationNamesTheFirstLayer) {
  const std::string dir = copy_tiny_checkpoint("engine-nan");
  const std::string name = "layers.2.ffn_norm.weight";  // BF16
  const std::string shard = shard_holding(dir, name);
  uint64_t offset = 0;
  {
    const io::SafetensorsFile f = io::SafetensorsFile::open(shard);
    uint64_t header = 0;
    std::ifstream(shard, std::ios::binary).read(reinterpret_cast<char*>(&header), 8);
    offset = 8 + header + f.at(name).begin;
  }
  std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  const uint16_t nan_bf16 = 0x7FC0;
  f.write(reinterpret_cast<const char*>(&nan_bf16), 2);
  f.close();
  const std::string msg = engine_error(dir, {0, 5, 6, 7});
  EXPECT_NE(msg.find("layer 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("non-finite"), std::string::npos) << msg;
}

}  // namespace
}  // namespace fp4kit::testing
