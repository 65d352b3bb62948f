// The linear-input observer that calibration builds on: every projection is shown under its
// checkpoint module name with the rows it is about to multiply; experts see their routed tokens and
// routing weights; the "all experts" option shows every expert every token without changing the output.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "engine_test_util.h"

namespace fp4kit::testing {
namespace {

struct Seen {
  std::vector<float> x;
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> tokens;
  std::vector<float> weights;
};

class Recorder : public engine::LinearObserver {
 public:
  void on_linear_input(const engine::LinearInput& in) override {
    Seen& s = seen[std::string(in.name)];
    EXPECT_EQ(s.rows, 0) << in.name << " shown twice";
    s.x.assign(in.x, in.x + in.rows * in.cols);
    s.rows = in.rows;
    s.cols = in.cols;
    s.tokens.assign(in.tokens.begin(), in.tokens.end());
    s.weights.assign(in.routing_weights.begin(), in.routing_weights.end());
    order.emplace_back(in.name);
  }
  std::map<std::string, Seen> seen;
  std::vector<std::string> order;
};

std::vector<int64_t> some_ids() {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 40; ++i) ids.push_back((i * 37 + 11) % 1024);
  return ids;
}

TEST(EngineObserver, SeesEveryLinearInputWithRoutedTokens) {
  Recorder rec;
  engine::Engine eng(tiny_dir(), {2, size_t{1} << 28, &rec, false});
  const std::vector<int64_t> ids = some_ids();
  engine::ForwardState s = eng.embed(ids, 2);  // two sequences of 20
  const int64_t T = s.tokens();
  eng.run_layer(0, s);
  eng.run_layer(1, s);  // CSA layer

  for (const char* n : {"wq_a", "wq_b", "wkv", "wo_a", "wo_b", "compressor.wkv", "compressor.wgate", "indexer.wq_b",
                        "indexer.weights_proj", "indexer.compressor.wkv", "indexer.compressor.wgate"}) {
    const std::string name = std::string("layers.1.attn.") + n;
    ASSERT_TRUE(rec.seen.count(name)) << name;
    EXPECT_EQ(rec.seen[name].rows, T) << name;
  }
  EXPECT_EQ(rec.seen["layers.1.attn.wo_a"].cols, 4 * 192);  // all groups, heads*head_dim
  EXPECT_EQ(rec.seen["layers.1.attn.wo_b"].cols, 2 * 128);
  EXPECT_EQ(rec.seen["layers.1.attn.wq_b"].cols, 128);
  EXPECT_FALSE(rec.seen.count("layers.0.attn.compressor.wkv"));  // sliding layer

  // Experts: w1/w3 rows are the routed tokens' shared-expert input rows; w2 carries routing weights.
  const Seen& shared = rec.seen["layers.1.ffn.shared_experts.w1"];
  ASSERT_EQ(shared.rows, T);
  int64_t routed_rows = 0;
  for (int64_t e = 0; e < 8; ++e) {
    const std::string p = "layers.1.ffn.experts." + std::to_string(e) + ".";
    if (!rec.seen.count(p + "w1")) continue;
    const Seen& w1 = rec.seen[p + "w1"];
    const Seen& w2 = rec.seen[p + "w2"];
    ASSERT_EQ(w1.tokens, w2.tokens);
    ASSERT_EQ(static_cast<int64_t>(w2.weights.size()), w2.rows);
    EXPECT_EQ(w2.cols, 128);
    for (int64_t i = 0; i < w1.rows; ++i) {
      const int64_t t = w1.tokens[i];
      for (int64_t d = 0; d < 128; ++d) ASSERT_EQ(w1.x[i * 128 + d], shared.x[t * 128 + d]);
      // The routing weight shown is the one the router gave this token for expert e.
      bool found = false;
      for (int64_t j = 0; j < 2; ++j)
        if (s.routing[1].experts[t * 2 + j] == e) {
          found = true;
          EXPECT_EQ(s.routing[1].weights[t * 2 + j], w2.weights[i]);
        }
      EXPECT_TRUE(found);
    }
    routed_rows += w1.rows;
  }
  EXPECT_EQ(routed_rows, T * 2);
  // Calls come in the order the forward pass runs them.
  EXPECT_EQ(rec.order.front(), "layers.0.attn.wq_a");
  EXPECT_EQ(rec.order.back(), "layers.1.ffn.shared_experts.w2");
}

TEST(EngineObserver, AllExpertsSeeAllTokensWithoutChangingTheOutput) {
  Recorder routed_only, all;
  engine::Engine e1(tiny_dir(), {2, size_t{1} << 28, &routed_only, false});
  engine::Engine e2(tiny_dir(), {2, size_t{1} << 28, &all, true});
  const std::vector<int64_t> ids = some_ids();
  const std::vector<float> l1 = e1.forward(ids, 1), l2 = e2.forward(ids, 1);
  EXPECT_EQ(max_abs_diff(l1, l2), 0.0f);
  const int64_t T = static_cast<int64_t>(ids.size());
  for (int64_t layer = 0; layer < 4; ++layer)
    for (int64_t e = 0; e < 8; ++e) {
      const std::string p = "layers." + std::to_string(layer) + ".ffn.experts." + std::to_string(e) + ".";
      const Seen& w2 = all.seen[p + "w2"];
      ASSERT_EQ(w2.rows, T) << p;
      ASSERT_EQ(all.seen[p + "w1"].rows, T) << p;
      // Routed rows carry the same h and weight as without the option; the others weight 0.
      const auto it = routed_only.seen.find(p + "w2");
      int64_t nonzero = 0;
      for (float w : w2.weights) nonzero += w != 0.0f;
      const int64_t routed = it == routed_only.seen.end() ? 0 : it->second.rows;
      EXPECT_EQ(nonzero, routed) << p;
      for (int64_t i = 0; i < routed; ++i) {
        const int64_t t = it->second.tokens[i];
        EXPECT_EQ(w2.weights[t], it->second.weights[i]);
        for (int64_t d = 0; d < 128; ++d) ASSERT_EQ(w2.x[t * 128 + d], it->second.x[i * 128 + d]);
      }
    }
}

}  // namespace
}  // namespace fp4kit::testing
