// The prefetcher hands out every tensor's exact bytes (checked against the shard's own reads), in
// group order, with at most `depth` slots of memory, through O_DIRECT where the file system allows
// it; a missing tensor, a truncated shard and a caller holding every slot give clear errors, and
// stopping early never hangs.
#include "io/tensor_prefetcher.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>

#include "base/error.h"
#include "io/direct_io.h"
#include "test_data.h"

namespace fp4kit::io {
namespace {

namespace fs = std::filesystem;

// The tiny V4 checkpoint's tensors grouped as a forward pass uses them: one group per layer, and
// everything outside the layers first.
std::vector<TensorGroup> layer_groups(const Checkpoint& ckpt) {
  std::map<int, TensorGroup> layers;
  TensorGroup rest{"model", {}};
  const std::regex layer(R"(^layers\.(\d+)\..*)");
  for (const auto& [name, shard] : ckpt.index().weight_map) {
    std::smatch m;
    if (std::regex_match(name, m, layer)) {
      const int l = std::stoi(m[1]);
      layers[l].label = "layer " + std::to_string(l);
      layers[l].tensors.push_back(name);
    } else {
      rest.tensors.push_back(name);
    }
  }
  std::vector<TensorGroup> groups{rest};
  for (auto& [l, g] : layers) groups.push_back(g);
  return groups;
}

// An allocator that counts what is live, to check the memory bound.
struct CountingAllocator {
  std::atomic<int64_t> live_bytes{0}, peak_bytes{0}, blocks{0};
  std::map<std::byte*, size_t> sizes;
  std::mutex mu;
  HostAllocator get() {
    HostAllocator base = aligned_host_allocator();
    return {[this, base](size_t bytes) {
              std::byte* p = base.allocate(bytes);
              std::lock_guard lock(mu);
              sizes[p] = bytes;
              live_bytes += static_cast<int64_t>(bytes);
              peak_bytes = std::max<int64_t>(peak_bytes, live_bytes);
              ++blocks;
              return p;
            },
            [this, base](std::byte* p) {
              {
                std::lock_guard lock(mu);
                live_bytes -= static_cast<int64_t>(sizes.at(p));
                sizes.erase(p);
                --blocks;
              }
              base.release(p);
            }};
  }
};

std::string copy_fixture(const std::string& tag) {
  const std::string dir = testing::fresh_temp_dir(tag);
  for (const auto& e : fs::directory_iterator(testing::test_data("dsv4-tiny")))
    fs::copy_file(e.path(), fs::path(dir) / e.path().filename(), fs::copy_options::overwrite_existing);
  return dir;
}

void expect_all_bytes(const Checkpoint& ckpt, const std::vector<TensorGroup>& groups, PrefetchOptions options,
                      PrefetchStats* stats_out = nullptr) {
  TensorPrefetcher prefetcher(ckpt, groups, std::move(options));
  ASSERT_EQ(prefetcher.groups(), groups.size());
  size_t index = 0;
  uint64_t bytes = 0;
  while (auto group = prefetcher.next()) {
    ASSERT_EQ(group->index(), index);
    ASSERT_EQ(group->label(), groups[index].label);
    ASSERT_EQ(group->tensors().size(), groups[index].tensors.size());
    for (size_t i = 0; i < group->tensors().size(); ++i) {
      const PrefetchedTensor& t = group->tensors()[i];
      ASSERT_EQ(t.info->name, groups[index].tensors[i]);
      auto [shard, info] = ckpt.find(t.info->name);
      const std::vector<std::byte> expected = shard->read_all(*info);
      ASSERT_EQ(t.bytes.size(), expected.size()) << t.info->name;
      ASSERT_EQ(std::memcmp(t.bytes.data(), expected.data(), expected.size()), 0) << t.info->name;
      ASSERT_EQ(&group->at(t.info->name), &t);
      bytes += expected.size();
    }
    ++index;
  }
  EXPECT_EQ(index, groups.size());
  EXPECT_FALSE(prefetcher.next().has_value());
  const PrefetchStats s = prefetcher.stats();
  EXPECT_EQ(s.tensor_bytes, bytes);
  EXPECT_EQ(s.groups_read, groups.size());
  EXPECT_GE(s.bytes_read, bytes);  // spans may include gaps between the tensors they join
  if (stats_out) *stats_out = s;
}

TEST(TensorPrefetcher, EveryTensorsBytesInGroupOrder) {
  const Checkpoint ckpt = Checkpoint::open(testing::test_data("dsv4-tiny"));
  const auto groups = layer_groups(ckpt);
  ASSERT_GE(groups.size(), 3u);
  for (size_t depth : {1, 2, 3}) {
    for (bool direct : {false, true}) {
      SCOPED_TRACE("depth " + std::to_string(depth) + (direct ? " direct" : " buffered"));
      PrefetchOptions o;
      o.depth = depth;
      o.direct = direct;
      expect_all_bytes(ckpt, groups, o);
    }
  }
  // No merging (every tensor its own span) and merging across everything give the same bytes.
  for (uint64_t gap : {uint64_t{0}, uint64_t{1} << 40}) {
    PrefetchOptions o;
    o.merge_gap = gap;
    expect_all_bytes(ckpt, groups, o);
  }
}

TEST(TensorPrefetcher, TakesTheDirectPathWhereTheFileSystemAllowsIt) {
  const std::string dir = copy_fixture("prefetch_direct");
  const Checkpoint ckpt = Checkpoint::open(dir);
  const auto groups = layer_groups(ckpt);
  // Whether this file system takes O_DIRECT, asked independently of the prefetcher.
  const int fd = open_direct_read(dir + "/model-00001-of-00003.safetensors");
  const bool fs_direct = fd >= 0;
  if (fd >= 0) ::close(fd);
  PrefetchStats with, without;
  PrefetchOptions o;
  expect_all_bytes(ckpt, groups, o, &with);
  o.direct = false;
  expect_all_bytes(ckpt, groups, o, &without);
  EXPECT_EQ(without.direct_spans, 0u);
  EXPECT_GT(without.buffered_spans, 0u);
  if (fs_direct) {
    EXPECT_GT(with.direct_spans, 0u);
    EXPECT_EQ(with.buffered_spans, 0u);
  } else {
    EXPECT_EQ(with.direct_spans, 0u);
    std::printf("note: %s refuses O_DIRECT; only the buffered path was exercised\n", dir.c_str());
  }
}

TEST(TensorPrefetcher, MemoryIsBoundedByDepthTimesTheLargestGroup) {
  const Checkpoint ckpt = Checkpoint::open(testing::test_data("dsv4-tiny"));
  const auto groups = layer_groups(ckpt);
  // The largest group's slot, from the tensors' sizes (each span rounded up to 4096, plus gaps).
  uint64_t largest = 0;
  for (const auto& g : groups) {
    uint64_t b = 0;
    for (const auto& n : g.tensors) b += ckpt.find(n).second->nbytes();
    largest = std::max(largest, b);
  }
  for (size_t depth : {1, 2}) {
    CountingAllocator counter;
    {
      PrefetchOptions o;
      o.depth = depth;
      o.merge_gap = 0;
      o.allocator = counter.get();
      TensorPrefetcher prefetcher(ckpt, groups, o);
      while (auto g = prefetcher.next()) {
        EXPECT_LE(counter.blocks.load(), static_cast<int64_t>(depth));
      }
      const PrefetchStats s = prefetcher.stats();
      EXPECT_EQ(static_cast<int64_t>(s.peak_slot_bytes), counter.peak_bytes.load());
    }
    EXPECT_EQ(counter.live_bytes.load(), 0);  // everything given back
    EXPECT_GT(counter.peak_bytes.load(), 0);
    // Per slot at most the largest group plus one alignment block per tensor (merge_gap 0: a span each).
    size_t most_tensors = 0;
    for (const auto& g : groups) most_tensors = std::max(most_tensors, g.tensors.size());
    EXPECT_LE(counter.peak_bytes.load(), static_cast<int64_t>(depth * (largest + 2 * kDirectAlignment * most_tensors)));
  }
}

TEST(TensorPrefetcher, MissingTensorNamesGroupAndTensor) {
  const Checkpoint ckpt = Checkpoint::open(testing::test_data("dsv4-tiny"));
  std::vector<TensorGroup> groups = {{"layer 7", {"layers.0.attn_norm.weight", "layers.0.no_such.weight"}}};
  try {
    TensorPrefetcher prefetcher(ckpt, groups);
    FAIL() << "no error";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("layer 7"), std::string::npos) << what;
    EXPECT_NE(what.find("layers.0.no_such.weight"), std::string::npos) << what;
  }
}

TEST(TensorPrefetcher, TruncatedShardIsAnErrorAtItsGroup) {
  const std::string dir = copy_fixture("prefetch_truncated");
  const Checkpoint ckpt = Checkpoint::open(dir);
  const auto groups = layer_groups(ckpt);
  // Open every shard (headers validated against the whole file), then cut the last shard in half.
  std::string last_shard;
  for (const auto& g : groups)
    for (const auto& n : g.tensors) last_shard = std::max(last_shard, ckpt.index().weight_map.at(n));
  const auto& shard = ckpt.shard(last_shard);
  fs::resize_file(shard.path(), shard.file_size() / 2);
  for (bool direct : {false, true}) {
    PrefetchOptions o;
    o.direct = direct;
    TensorPrefetcher prefetcher(ckpt, groups, o);
    bool failed = false;
    try {
      while (auto g = prefetcher.next()) {
      }
    } catch (const InputError& e) {
      failed = true;
      const std::string what = e.what();
      EXPECT_NE(what.find(last_shard), std::string::npos) << what;
      EXPECT_NE(what.find("file ends at byte"), std::string::npos) << what;
      EXPECT_NE(what.find("tensors '"), std::string::npos) << what;
    }
    EXPECT_TRUE(failed) << (direct ? "direct" : "buffered");
  }
}

TEST(TensorPrefetcher, HoldingEverySlotIsAnErrorNotAHang) {
  const Checkpoint ckpt = Checkpoint::open(testing::test_data("dsv4-tiny"));
  const auto groups = layer_groups(ckpt);
  PrefetchOptions o;
  o.depth = 2;
  TensorPrefetcher prefetcher(ckpt, groups, o);
  auto a = prefetcher.next();
  auto b = prefetcher.next();
  ASSERT_TRUE(a && b);
  EXPECT_THROW(prefetcher.next(), Error);
  a.reset();  // one slot back: the reader goes on
  auto c = prefetcher.next();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->index(), 2u);
  EXPECT_EQ(b->tensors().front().info->name, groups[1].tensors.front());
}

TEST(TensorPrefetcher, StoppingEarlyJoinsTheReader) {
  const Checkpoint ckpt = Checkpoint::open(testing::test_data("dsv4-tiny"));
  const auto groups = layer_groups(ckpt);
  for (int taken = 0; taken < 3; ++taken) {
    std::optional<PrefetchedGroup> kept;
    {
      TensorPrefetcher prefetcher(ckpt, groups);
      for (int i = 0; i < taken; ++i) kept = prefetcher.next();
    }  // destroyed with the reader blocked on a full set of slots, or mid-way
    if (kept) {  // a handle outlives its prefetcher and still reads its bytes
      auto [shard, info] = ckpt.find(kept->tensors().front().info->name);
      const auto expected = shard->read_all(*info);
      EXPECT_EQ(std::memcmp(kept->tensors().front().bytes.data(), expected.data(), expected.size()), 0);
    }
  }
}

}  // namespace
}  // namespace fp4kit::io
