// Pairing weights with their scales from headers: every layout DeepSeek ships, and every way a
// header can get it wrong.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include "io/checkpoint_index.h"
#include "models/deepseek_v4.h"
#include "models/quantized_weights.h"
#include "test_data.h"

namespace fp4kit {
namespace {

TensorRef ref(std::string name, DType dtype, std::vector<int64_t> shape, std::string file = "shard.safetensors") {
  return {std::move(name), dtype, std::move(shape), std::move(file)};
}

// The one problem a pairing must report, holding every needle; nothing may be quantized or plain
// except `plain`.
void expect_one_problem(const std::vector<TensorRef>& tensors, std::initializer_list<std::string_view> needles,
                        const std::vector<std::string>& plain = {}) {
  const WeightPairing p = pair_quantized_weights(tensors);
  ASSERT_EQ(p.problems.size(), 1u) << (p.problems.empty() ? "no problem" : p.problems[0] + " ...");
  const std::string& line = p.problems[0];
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  for (std::string_view n : needles) EXPECT_NE(line.find(n), std::string::npos) << "'" << n << "' missing from: " << line;
  EXPECT_TRUE(p.quantized.empty());
  EXPECT_EQ(p.plain, plain);
}

TEST(QuantizedWeights, V4Fp8BlockWithE8M0ScaleIncludingRaggedEdge) {
  const WeightPairing p = pair_quantized_weights({ref("a.wkv.weight", DType::F8_E4M3, {192, 128}),
                                                  ref("a.wkv.scale", DType::F8_E8M0, {2, 1})});
  ASSERT_TRUE(p.problems.empty()) << p.problems[0];
  ASSERT_EQ(p.quantized.size(), 1u);
  EXPECT_EQ(p.quantized[0].weight, "a.wkv.weight");
  EXPECT_EQ(p.quantized[0].scale, "a.wkv.scale");
  EXPECT_EQ(p.quantized[0].storage, Storage::Fp8BlockE8M0);
  EXPECT_EQ(p.quantized[0].logical_shape, (std::vector<int64_t>{192, 128}));
  EXPECT_TRUE(p.plain.empty());
}

TEST(QuantizedWeights, V3Fp8BlockWithF32WeightScaleInv) {
  const WeightPairing p = pair_quantized_weights({ref("x.weight_scale_inv", DType::F32, {2, 3}),
                                                  ref("x.weight", DType::F8_E4M3, {200, 272})});
  ASSERT_TRUE(p.problems.empty()) << p.problems[0];
  ASSERT_EQ(p.quantized.size(), 1u);
  EXPECT_EQ(p.quantized[0].weight, "x.weight");
  EXPECT_EQ(p.quantized[0].scale, "x.weight_scale_inv");
  EXPECT_EQ(p.quantized[0].storage, Storage::Fp8BlockF32);
  EXPECT_EQ(p.quantized[0].logical_shape, (std::vector<int64_t>{200, 272}));
}

TEST(QuantizedWeights, Fp8RepackExpertsWithF32OrE8M0Scale) {
  const WeightPairing p = pair_quantized_weights({ref("e.0.w1.weight", DType::F8_E4M3, {256, 128}),
                                                  ref("e.0.w1.scale", DType::F32, {2, 1}),
                                                  ref("e.1.w1.weight", DType::F8_E4M3, {256, 128}),
                                                  ref("e.1.w1.scale", DType::F8_E8M0, {2, 1})});
  ASSERT_TRUE(p.problems.empty()) << p.problems[0];
  ASSERT_EQ(p.quantized.size(), 2u);
  EXPECT_EQ(p.quantized[0].storage, Storage::Fp8BlockF32);
  EXPECT_EQ(p.quantized[1].storage, Storage::Fp8BlockE8M0);
}

TEST(QuantizedWeights, Mxfp4ExpertsInI8OrU8) {
  const WeightPairing p = pair_quantized_weights({ref("e.w2.weight", DType::I8, {128, 64}),
                                                  ref("e.w2.scale", DType::F8_E8M0, {128, 4}),
                                                  ref("f.w2.weight", DType::U8, {3, 16}),
                                                  ref("f.w2.scale", DType::F8_E8M0, {3, 1})});
  ASSERT_TRUE(p.problems.empty()) << p.problems[0];
  ASSERT_EQ(p.quantized.size(), 2u);
  EXPECT_EQ(p.quantized[0].storage, Storage::Mxfp4);
  EXPECT_EQ(p.quantized[0].logical_shape, (std::vector<int64_t>{128, 128}));
  EXPECT_EQ(p.quantized[1].logical_shape, (std::vector<int64_t>{3, 32}));
}

TEST(QuantizedWeights, EverythingElseIsPlainInInputOrder) {
  const WeightPairing p = pair_quantized_weights({
      ref("norm.weight", DType::BF16, {128}),
      ref("tid2eid.weight", DType::I8, {16, 2}),  // an integer "weight" without a scale
      ref("ffn.gate.tid2eid", DType::I64, {1024, 2}),
      ref("hc_head_scale", DType::F32, {1}),  // '_scale', not '.scale'
      ref("u8.weight", DType::U8, {4, 4}),
      ref("embed.weight", DType::BF16, {1024, 128}),
  });
  EXPECT_TRUE(p.problems.empty());
  EXPECT_TRUE(p.quantized.empty());
  EXPECT_EQ(p.plain, (std::vector<std::string>{"norm.weight", "tid2eid.weight", "ffn.gate.tid2eid", "hc_head_scale",
                                               "u8.weight", "embed.weight"}));
}

TEST(QuantizedWeights, Fp8WeightWithoutScale) {
  expect_one_problem({ref("m.weight", DType::F8_E4M3, {128, 128}, "s1.safetensors")},
                     {"s1.safetensors", "'m.weight'", "no scale", "'m.scale'", "'m.weight_scale_inv'"});
}

TEST(QuantizedWeights, Fp8TensorThatIsNotAWeight) {
  expect_one_problem({ref("m.cache", DType::F8_E4M3, {128, 128}, "s1.safetensors")}, {"s1.safetensors", "'m.cache'"});
}

TEST(QuantizedWeights, ScaleWithoutWeight) {
  expect_one_problem({ref("keep", DType::BF16, {2}), ref("m.scale", DType::F8_E8M0, {1, 1}, "s2.safetensors")},
                     {"s2.safetensors", "'m.scale'", "no weight", "'m.weight'"}, {"keep"});
  expect_one_problem({ref("m.weight_scale_inv", DType::F32, {1, 1}, "s3.safetensors")},
                     {"s3.safetensors", "'m.weight_scale_inv'", "'m.weight'"});
}

TEST(QuantizedWeights, WeightWithTwoScales) {
  expect_one_problem({ref("m.weight", DType::F8_E4M3, {128, 128}, "w.safetensors"),
                      ref("m.scale", DType::F8_E8M0, {1, 1}), ref("m.weight_scale_inv", DType::F32, {1, 1})},
                     {"w.safetensors", "'m.weight'", "two scales", "'m.scale'", "'m.weight_scale_inv'"});
}

TEST(QuantizedWeights, Fp8ScaleOfTheWrongShapeNamesTheExpectedOne) {
  // [192, 128] has two row blocks (the second of 64 rows): the scale must be [2, 1].
  expect_one_problem({ref("a.wkv.weight", DType::F8_E4M3, {192, 128}, "w.safetensors"),
                      ref("a.wkv.scale", DType::F8_E8M0, {1, 1}, "s.safetensors")},
                     {"s.safetensors", "'a.wkv.scale'", "'a.wkv.weight'", "[192, 128]", "[2, 1]", "is F8_E8M0 [1, 1]"});
  expect_one_problem({ref("w.weight", DType::F8_E4M3, {200, 272}), ref("w.weight_scale_inv", DType::F32, {2, 2})},
                     {"'w.weight_scale_inv'", "[2, 3]", "is F32 [2, 2]"});
}

TEST(QuantizedWeights, Fp8ScaleOfTheWrongDtype) {
  expect_one_problem({ref("m.weight", DType::F8_E4M3, {128, 128}), ref("m.scale", DType::BF16, {1, 1}, "s.safetensors")},
                     {"s.safetensors", "'m.scale'", "F8_E8M0 or F32", "is BF16 [1, 1]"});
}

TEST(QuantizedWeights, Fp8WeightThatIsNotAMatrix) {
  expect_one_problem({ref("m.weight", DType::F8_E4M3, {128}, "w.safetensors"), ref("m.scale", DType::F8_E8M0, {1})},
                     {"w.safetensors", "'m.weight'", "not a matrix"});
}

TEST(QuantizedWeights, Mxfp4ScaleOfTheWrongShapeOrDtype) {
  expect_one_problem({ref("e.weight", DType::I8, {128, 64}), ref("e.scale", DType::F8_E8M0, {128, 2}, "s.safetensors")},
                     {"s.safetensors", "'e.scale'", "packed FP4", "'e.weight'", "[128, 64]", "F8_E8M0 [128, 4]",
                      "is F8_E8M0 [128, 2]"});
  // An FP8-block-shaped scale on a packed weight is wrong too.
  expect_one_problem({ref("e.weight", DType::I8, {256, 64}), ref("e.scale", DType::F8_E8M0, {2, 1})},
                     {"'e.scale'", "F8_E8M0 [256, 4]"});
  expect_one_problem({ref("e.weight", DType::U8, {128, 64}), ref("e.scale", DType::F32, {128, 4})},
                     {"'e.scale'", "is F32 [128, 4]"});
}

TEST(QuantizedWeights, Mxfp4RowsThatAreNotWholeGroups) {
  expect_one_problem({ref("e.weight", DType::I8, {4, 8}, "w.safetensors"), ref("e.scale", DType::F8_E8M0, {4, 1})},
                     {"w.safetensors", "'e.weight'", "16 values per row", "32"});
  expect_one_problem({ref("e.weight", DType::I8, {2, 4, 16}), ref("e.scale", DType::F8_E8M0, {2, 4, 1})},
                     {"'e.weight'", "not a matrix"});
}

TEST(QuantizedWeights, ScaleOnAWeightThatIsNotQuantized) {
  expect_one_problem({ref("m.weight", DType::BF16, {128, 128}), ref("m.scale", DType::F32, {1, 1}, "s.safetensors")},
                     {"s.safetensors", "'m.scale'", "'m.weight'", "BF16 [128, 128]", "neither"});
}

TEST(QuantizedWeights, ProblemsComeInInputOrderAndSparePairsStillPair) {
  const WeightPairing p = pair_quantized_weights({
      ref("a.weight", DType::F8_E4M3, {128, 128}),  // no scale
      ref("ok.weight", DType::F8_E4M3, {128, 128}),
      ref("ok.scale", DType::F8_E8M0, {1, 1}),
      ref("b.scale", DType::F8_E8M0, {1, 1}),  // no weight
      ref("n", DType::F32, {1}),
  });
  ASSERT_EQ(p.problems.size(), 2u);
  EXPECT_NE(p.problems[0].find("'a.weight'"), std::string::npos) << p.problems[0];
  EXPECT_NE(p.problems[1].find("'b.scale'"), std::string::npos) << p.problems[1];
  ASSERT_EQ(p.quantized.size(), 1u);
  EXPECT_EQ(p.quantized[0].weight, "ok.weight");
  EXPECT_EQ(p.plain, (std::vector<std::string>{"n"}));
}

// The tiny checkpoint: the pairing agrees with the V4 descriptor on every tensor.
TEST(QuantizedWeights, TinyCheckpointAgreesWithTheV4Descriptor) {
  const io::Checkpoint ckpt = io::Checkpoint::open(testing::test_data("dsv4-tiny"));
  std::vector<TensorRef> refs;
  for (const auto& file : ckpt.shard_files())
    for (const auto& t : ckpt.shard(file).tensors()) refs.push_back({t.name, t.dtype, t.shape, file});
  ASSERT_EQ(refs.size(), 427u);
  const WeightPairing p = pair_quantized_weights(refs);
  ASSERT_TRUE(p.problems.empty()) << p.problems[0];

  std::ifstream in(testing::test_data("dsv4-tiny/config.json"));
  const auto specs = deepseek_v4_tensors(DeepseekV4Config::from_json(nlohmann::json::parse(in), "config.json"));
  std::map<std::string, const QuantizedWeight*> quantized;
  for (const auto& q : p.quantized) quantized[q.weight] = &q;
  const std::set<std::string> plain(p.plain.begin(), p.plain.end());
  size_t fp8 = 0, mxfp4 = 0, scales = 0;
  for (const TensorSpec& s : specs) {
    if (s.is_scale) {
      ++scales;
      EXPECT_FALSE(plain.count(s.name)) << s.name;
      continue;
    }
    if (s.storage == Storage::Plain) {
      EXPECT_TRUE(plain.count(s.name)) << s.name;
      continue;
    }
    ASSERT_TRUE(quantized.count(s.name)) << s.name;
    const QuantizedWeight& q = *quantized[s.name];
    EXPECT_EQ(q.storage, s.storage) << s.name;
    EXPECT_EQ(q.scale, s.name.substr(0, s.name.size() - 7) + ".scale");
    std::vector<int64_t> logical = s.shape;
    if (s.storage == Storage::Mxfp4) logical[1] *= 2;
    EXPECT_EQ(q.logical_shape, logical) << s.name;
    (s.storage == Storage::Mxfp4 ? mxfp4 : fp8)++;
  }
  EXPECT_EQ(fp8, 44u);
  EXPECT_EQ(mxfp4, 120u);
  EXPECT_EQ(scales, 164u);
  EXPECT_EQ(p.quantized.size(), 164u);
  EXPECT_EQ(p.plain.size(), 427u - 2 * 164u);
}

}  // namespace
}  // namespace fp4kit

namespace fp4kit {
namespace {

TEST(QuantizedWeightsNvfp4, ModelOptLayoutWithInputScale) {
  const WeightPairing p = pair_quantized_weights({ref("e.w1.weight", DType::U8, {128, 64}),
                                                  ref("e.w1.weight_scale", DType::F8_E4M3, {128, 8}),
                                                  ref("e.w1.weight_scale_2", DType::F32, {}),
                                                  ref("e.w1.input_scale", DType::F32, {}),
                                                  ref("attn.k_scale", DType::F32, {})});
  ASSERT_TRUE(p.problems.empty()) << p.problems[0];
  ASSERT_EQ(p.quantized.size(), 1u);
  EXPECT_EQ(p.quantized[0].storage, Storage::Nvfp4);
  EXPECT_EQ(p.quantized[0].scale, "e.w1.weight_scale");
  EXPECT_EQ(p.quantized[0].logical_shape, (std::vector<int64_t>{128, 128}));
  EXPECT_EQ(p.quantized[0].companions.size(), 2u);
  EXPECT_EQ(p.plain, (std::vector<std::string>{"attn.k_scale"}));  // not an NVFP4 companion of anything
}

TEST(QuantizedWeightsNvfp4, CompressedTensorsLayout) {
  const WeightPairing p = pair_quantized_weights({ref("m.o_proj.weight_packed", DType::U8, {32, 128}),
                                                  ref("m.o_proj.weight_scale", DType::F8_E4M3, {32, 16}),
                                                  ref("m.o_proj.weight_global_scale", DType::F32, {1})});
  ASSERT_TRUE(p.problems.empty()) << p.problems[0];
  ASSERT_EQ(p.quantized.size(), 1u);
  EXPECT_EQ(p.quantized[0].weight, "m.o_proj.weight_packed");
  EXPECT_EQ(p.quantized[0].logical_shape, (std::vector<int64_t>{32, 256}));
}

TEST(QuantizedWeightsNvfp4, Problems) {
  expect_one_problem({ref("e.w1.weight", DType::U8, {128, 64}), ref("e.w1.weight_scale", DType::F8_E4M3, {128, 4}),
                      ref("e.w1.weight_scale_2", DType::F32, {})},
                     {"e.w1.weight_scale", "[128, 8]"});
  expect_one_problem({ref("e.w1.weight", DType::U8, {128, 64}), ref("e.w1.weight_scale", DType::F8_E4M3, {128, 8})},
                     {"e.w1.weight", "per-tensor scale"});
  expect_one_problem({ref("e.w1.weight", DType::U8, {128, 64}), ref("e.w1.weight_scale", DType::F8_E4M3, {128, 8}),
                      ref("e.w1.weight_scale_2", DType::F32, {2})},
                     {"e.w1.weight_scale_2", "scalar"});
  expect_one_problem({ref("e.w1.weight", DType::U8, {128, 64}), ref("e.w1.weight_scale_2", DType::F32, {})},
                     {"e.w1.weight", "no block scale"});
}

}  // namespace
}  // namespace fp4kit
