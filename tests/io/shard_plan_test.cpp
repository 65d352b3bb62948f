#include "io/shard_plan.h"

#include <gtest/gtest.h>

#include "base/byte_size.h"
#include "base/error.h"

namespace fp4kit::io {
namespace {

TensorInfo t(const std::string& name, uint64_t bytes) { return TensorInfo{name, DType::U8, {static_cast<int64_t>(bytes)}, 0, bytes}; }

TEST(ShardPlan, CutsBySizeAndNamesLikeHuggingFace) {
  const std::vector<TensorInfo> ts = {t("a", 40), t("b", 40), t("c", 30), t("huge", 500), t("d", 10)};
  const auto shards = plan_shards(ts, 100);
  ASSERT_EQ(shards.size(), 4u);
  EXPECT_EQ(shards[0].tensors, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(shards[1].tensors, (std::vector<size_t>{2}));
  EXPECT_EQ(shards[2].tensors, (std::vector<size_t>{3}));
  EXPECT_EQ(shards[3].tensors, (std::vector<size_t>{4}));
  EXPECT_EQ(shards[0].file, "model-00001-of-00004.safetensors");
  const auto index = index_for(shards, ts);
  EXPECT_EQ(index.weight_map.at("c"), "model-00002-of-00004.safetensors");
  EXPECT_EQ(index.metadata["total_size"], 620u);
  EXPECT_TRUE(plan_shards({}, 100).empty());
}

TEST(ShardPlan, OversizedTensorGetsItsOwnShard) {
  const auto shards = plan_shards({t("a", 10), t("huge", 500), t("b", 10)}, 100);
  ASSERT_EQ(shards.size(), 3u);
  EXPECT_EQ(shards[1].tensors, (std::vector<size_t>{1}));
}

TEST(ShardPlan, ParsesSizes) {
  EXPECT_EQ(parse_byte_size("5GB", "--shard-size"), 5000000000u);
  EXPECT_EQ(parse_byte_size("500MB", "--shard-size"), 500000000u);
  EXPECT_EQ(parse_byte_size("4GiB", "--shard-size"), 4294967296u);
  EXPECT_EQ(parse_byte_size("1234", "--shard-size"), 1234u);
  EXPECT_EQ(parse_byte_size("1.5gb", "--shard-size"), 1500000000u);
  for (const char* bad : {"", "GB", "5XB", "-3GB", "0", "nan"}) EXPECT_THROW(parse_byte_size(bad, "--shard-size"), InputError) << bad;
}

}  // namespace
}  // namespace fp4kit::io
