// The V4 descriptor against a real checkpoint's headers and the official release's counts.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "base/error.h"
#include "io/checkpoint_index.h"
#include "models/deepseek_v4.h"
#include "test_data.h"

namespace fp4kit {
namespace {

DeepseekV4Config fixture_config() {
  std::ifstream in(testing::test_data("dsv4-tiny/config.json"));
  return DeepseekV4Config::from_json(nlohmann::json::parse(in), "config.json");
}

TEST(DeepseekV4, DescribesEveryTensorOfTheTinyCheckpoint) {
  const auto specs = deepseek_v4_tensors(fixture_config());
  const io::Checkpoint ckpt = io::Checkpoint::open(testing::test_data("dsv4-tiny"));
  std::map<std::string, const io::TensorInfo*> actual;
  for (const auto& shard : ckpt.shard_files())
    for (const auto& t : ckpt.shard(shard).tensors()) actual[t.name] = &t;
  EXPECT_EQ(specs.size(), actual.size());
  for (const auto& s : specs) {
    auto it = actual.find(s.name);
    ASSERT_NE(it, actual.end()) << s.name;
    EXPECT_EQ(s.dtype, it->second->dtype) << s.name;
    EXPECT_EQ(s.shape, it->second->shape) << s.name;
    EXPECT_NE(s.role, TensorRole::Unknown) << s.name;
  }
}

TEST(DeepseekV4, TinyPresetIsTheFixture) {
  const auto a = deepseek_v4_tensors(*deepseek_v4_preset("tiny"));
  const auto b = deepseek_v4_tensors(fixture_config());
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].shape, b[i].shape) << a[i].name;
  }
}

// deepseek-ai/DeepSeek-V4-Flash's index: 69,187 tensors, 159,609,485,896 bytes; 34,600 weights,
// 34,167 scales, 62 ape, 44 attn_sink, 41 bias, 3 tid2eid.
TEST(DeepseekV4, FlashPresetMatchesTheReleaseIndex) {
  const auto specs = deepseek_v4_tensors(*deepseek_v4_preset("v4-flash"));
  uint64_t bytes = 0;
  std::map<std::string, size_t> suffix;
  for (const auto& s : specs) {
    uint64_t n = 1;
    for (auto d : s.shape) n *= static_cast<uint64_t>(d);
    bytes += n * dtype_bits(s.dtype) / 8;
    suffix[s.name.substr(s.name.rfind('.') + 1)]++;
  }
  EXPECT_EQ(specs.size(), 69187u);
  EXPECT_EQ(bytes, 159609485896u);
  EXPECT_EQ(suffix["weight"], 34600u);
  EXPECT_EQ(suffix["scale"], 34167u);
  EXPECT_EQ(suffix["ape"], 62u);
  EXPECT_EQ(suffix["attn_sink"], 44u);
  EXPECT_EQ(suffix["bias"], 41u);
  EXPECT_EQ(suffix["tid2eid"], 3u);
}

TEST(DeepseekV4, ProShapes) {
  const auto specs = deepseek_v4_tensors(*deepseek_v4_preset("v4-pro"));
  std::map<std::string, std::vector<int64_t>> shape;
  for (const auto& s : specs) shape[s.name] = s.shape;
  EXPECT_EQ(shape["layers.0.attn.wq_a.weight"], (std::vector<int64_t>{1536, 7168}));
  EXPECT_EQ(shape["layers.0.attn.wq_b.weight"], (std::vector<int64_t>{65536, 1536}));
  EXPECT_EQ(shape["layers.0.attn.wo_a.weight"], (std::vector<int64_t>{16384, 4096}));
  EXPECT_EQ(shape["layers.0.attn.wo_b.weight"], (std::vector<int64_t>{7168, 16384}));
  EXPECT_EQ(shape["layers.5.ffn.experts.383.w1.weight"], (std::vector<int64_t>{3072, 3584}));
  EXPECT_EQ(shape["layers.5.ffn.experts.383.w1.scale"], (std::vector<int64_t>{3072, 224}));
  EXPECT_EQ(shape["layers.5.ffn.experts.0.w2.weight"], (std::vector<int64_t>{7168, 1536}));
  EXPECT_EQ(shape["layers.0.hc_attn_fn"], (std::vector<int64_t>{24, 28672}));
  EXPECT_EQ(shape.count("layers.60.ffn.gate.bias"), 1u);
  EXPECT_EQ(shape.count("mtp.0.e_proj.weight"), 1u);
}

TEST(DeepseekV4, PresetOverridesAndErrors) {
  const auto c = *deepseek_v4_preset("v4-pro:layers=2,experts=16");
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.n_routed_experts, 16);
  EXPECT_EQ(c.compress_ratios, (std::vector<int64_t>{128, 128, 0}));
  EXPECT_FALSE(deepseek_v4_preset("v5-ultra").has_value());
  EXPECT_THROW(deepseek_v4_preset("v4-pro:layers=x"), InputError);
  EXPECT_THROW(deepseek_v4_preset("v4-pro:colour=3"), InputError);
  nlohmann::json j = fixture_config().raw;
  j.erase("hidden_size");
  try {
    DeepseekV4Config::from_json(j, "cfg.json");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("hidden_size"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos);
  }
}

TEST(DeepseekV4, RolesByName) {
  EXPECT_EQ(deepseek_v4_role("layers.3.ffn.experts.17.w1.weight"), TensorRole::RoutedExpert);
  EXPECT_EQ(deepseek_v4_role("layers.3.ffn.shared_experts.w2.scale"), TensorRole::SharedExpert);
  EXPECT_EQ(deepseek_v4_role("layers.3.ffn.gate.weight"), TensorRole::Router);
  EXPECT_EQ(deepseek_v4_role("layers.3.ffn.gate.bias"), TensorRole::RouterBias);
  EXPECT_EQ(deepseek_v4_role("layers.0.ffn.gate.tid2eid"), TensorRole::HashTable);
  EXPECT_EQ(deepseek_v4_role("layers.1.attn.indexer.compressor.wkv.weight"), TensorRole::CompressorProjection);
  EXPECT_EQ(deepseek_v4_role("layers.1.attn.indexer.wq_b.weight"), TensorRole::IndexerProjection);
  EXPECT_EQ(deepseek_v4_role("layers.1.attn.compressor.norm.weight"), TensorRole::Norm);
  EXPECT_EQ(deepseek_v4_role("mtp.0.hc_head_fn"), TensorRole::HyperConnection);
  EXPECT_EQ(deepseek_v4_role("mtp.0.e_proj.weight"), TensorRole::MtpProjection);
  EXPECT_EQ(deepseek_v4_role("something.else"), TensorRole::Unknown);
}

}  // namespace
}  // namespace fp4kit
