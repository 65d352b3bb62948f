// A model streamed group by group through pinned slots onto the GPU arrives byte for byte: the
// prefetcher's pinned memory takes asynchronous copies, and what comes back from the device equals
// the shard's own reads.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "cuda/pinned_host_allocator.h"
#include "engine/layer_groups.h"
#include "gpu_test.h"
#include "io/tensor_prefetcher.h"
#include "test_data.h"

namespace fp4kit {
namespace {

TEST(CudaPrefetchUpload, GroupsReachTheDeviceByteForByte) {
  FP4KIT_REQUIRE_GPU();
  const io::Checkpoint ckpt = io::Checkpoint::open(testing::test_data("dsv4-tiny"));
  const auto groups = engine::forward_tensor_groups(ckpt, 4);
  io::PrefetchOptions options;
  options.allocator = cuda::pinned_host_allocator();
  io::TensorPrefetcher prefetcher(ckpt, groups, options);
  cuda::Stream stream;
  size_t tensors = 0;
  while (auto group = prefetcher.next()) {
    std::map<std::string, cuda::DeviceBuffer> on_device;
    for (const io::PrefetchedTensor& t : group->tensors()) {
      cuda::DeviceBuffer d(t.bytes.size(), t.info->name);
      cuda::copy_to_device(d.data(), t.bytes.data(), t.bytes.size(), stream);  // async from pinned memory
      on_device.emplace(t.info->name, std::move(d));
    }
    for (const auto& [name, d] : on_device) {
      auto [shard, info] = ckpt.find(name);
      const std::vector<std::byte> expected = shard->read_all(*info);
      const auto back = testing::read_back<std::byte>(d.data(), d.bytes(), stream);
      ASSERT_EQ(back.size(), expected.size()) << name;
      ASSERT_EQ(std::memcmp(back.data(), expected.data(), expected.size()), 0) << name;
      ++tensors;
    }
  }
  EXPECT_GT(tensors, 100u);
  EXPECT_EQ(prefetcher.stats().groups_read, groups.size());
}

}  // namespace
}  // namespace fp4kit
