// The forward pass's tensor groups cover every tensor it reads exactly once, in reading order.
#include "engine/layer_groups.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "base/error.h"
#include "test_data.h"

namespace fp4kit::engine {
namespace {

TEST(ForwardTensorGroups, EveryTensorOnceInReadingOrder) {
  const io::Checkpoint ckpt = io::Checkpoint::open(testing::test_data("dsv4-tiny"));
  const auto groups = forward_tensor_groups(ckpt, 4);
  ASSERT_EQ(groups.size(), 6u);
  EXPECT_EQ(groups[0].label, "embedding");
  EXPECT_EQ(groups[0].tensors, std::vector<std::string>{"embed.weight"});
  EXPECT_EQ(groups[5].label, "head");
  const std::set<std::string> head(groups[5].tensors.begin(), groups[5].tensors.end());
  EXPECT_EQ(head, (std::set<std::string>{"hc_head_base", "hc_head_fn", "hc_head_scale", "head.weight", "norm.weight"}));
  std::map<std::string, int> seen;
  for (const auto& g : groups)
    for (const auto& n : g.tensors) ++seen[n];
  size_t expected = 0;
  for (const auto& [name, shard] : ckpt.index().weight_map) {
    if (name.rfind("mtp.", 0) == 0) {
      EXPECT_EQ(seen.count(name), 0u) << name;
      continue;
    }
    ++expected;
    EXPECT_EQ(seen[name], 1) << name;
  }
  EXPECT_EQ(seen.size(), expected);
  for (int l = 0; l < 4; ++l) {
    EXPECT_EQ(groups[l + 1].label, "layer " + std::to_string(l));
    ASSERT_FALSE(groups[l + 1].tensors.empty());
    for (const auto& n : groups[l + 1].tensors) EXPECT_EQ(n.rfind("layers." + std::to_string(l) + ".", 0), 0u) << n;
  }
}

TEST(ForwardTensorGroups, ALayerWithoutTensorsIsNamed) {
  const io::Checkpoint ckpt = io::Checkpoint::open(testing::test_data("dsv4-tiny"));
  try {
    forward_tensor_groups(ckpt, 5);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no tensors of layer 4"), std::string::npos) << e.what();
  }
  // Fewer layers than the checkpoint has: the others are never read.
  EXPECT_EQ(forward_tensor_groups(ckpt, 2).size(), 4u);
}

}  // namespace
}  // namespace fp4kit::engine
