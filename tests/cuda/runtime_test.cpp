// The device runtime: buffers, copies, and errors that name what failed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <tuple>
#include <vector>

#include "base/error.h"
#include "cuda/bandwidth_copy.h"
#include "cuda/elementwise.h"
#include "cuda/runtime.h"
#include "formats/bf16.h"
#include "formats/f16.h"
#include "formats/float_bits.h"
#include "gpu_test.h"

namespace fp4kit::cuda {
namespace {

TEST(CudaRuntime, ProbeNamesTheDevice) {
  FP4KIT_REQUIRE_GPU();
  const DeviceInfo info = require_device();
  EXPECT_FALSE(info.name.empty());
  EXPECT_GT(info.multiprocessors, 0);
  EXPECT_GT(info.total_memory, size_t{0});
  std::printf("GPU: %s, sm_%d%d, %d SMs, %zu MiB, binary has %s\n", info.name.c_str(), info.sm_major,
              info.sm_minor, info.multiprocessors, info.total_memory >> 20, compiled_archs().c_str());
}

TEST(CudaRuntime, CopiesRoundTrip) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  std::vector<uint32_t> host(1 << 20);
  std::iota(host.begin(), host.end(), 12345u);
  DeviceBuffer a(host.size() * 4, "a"), b(host.size() * 4, "b");
  copy_to_device(a.data(), host.data(), a.bytes(), s);
  copy_on_device(b.data(), a.data(), a.bytes(), s);
  std::vector<uint32_t> back(host.size(), 0);
  copy_to_host(back.data(), b.data(), b.bytes(), s);
  s.synchronize();
  EXPECT_EQ(back, host);
}

// The bandwidth kernels of the benchmarks: the copy is exact at sizes that end a grid-stride pass
// early and late; the read kernel reads every vector (a magic XOR placed in any one of them reaches
// the sink), writes nothing else, and both refuse misaligned sizes.
TEST(CudaRuntime, BandwidthKernelsCopyAndReadEveryVector) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  for (const size_t words : {size_t{4}, size_t{4} * 1023, size_t{4} * 1024 * 8 * 132 * 3 + 12}) {
    std::vector<uint32_t> host(words);
    std::iota(host.begin(), host.end(), 7u);
    DeviceBuffer a(words * 4, "a"), b(words * 4, "b");
    copy_to_device(a.data(), host.data(), a.bytes(), s);
    fill_bytes(b.data(), 0, b.bytes(), s);
    copy_with_kernel(b.data(), a.data(), a.bytes(), s.get());
    std::vector<uint32_t> back(words, 0);
    copy_to_host(back.data(), b.data(), b.bytes(), s);
    s.synchronize();
    EXPECT_EQ(back, host) << words << " words";
  }
  constexpr uint32_t kMagic = 0x9E3779B9u;
  const size_t words = size_t{4} * 1024 * 8 * 132 * 3 + 12;  // more vectors than one pass of the grid
  DeviceBuffer src(words * 4, "read source"), sink(4, "sink");
  for (const size_t at : {size_t{0}, words / 2 + 1, words - 1}) {
    std::vector<uint32_t> host(words, 0);
    host[at] = kMagic;  // the only non-zero word: its thread's XOR is the magic
    copy_to_device(src.data(), host.data(), src.bytes(), s);
    fill_bytes(sink.data(), 0, 4, s);
    read_with_kernel(src.data(), src.bytes(), sink.data<uint32_t>(), s.get());
    uint32_t got = 0;
    copy_to_host(&got, sink.data(), 4, s);
    s.synchronize();
    EXPECT_EQ(got, kMagic) << "the word at " << at << " was not read";
  }
  std::vector<uint32_t> host(words, 0x01010101u);
  copy_to_device(src.data(), host.data(), src.bytes(), s);
  fill_bytes(sink.data(), 0x5A, 4, s);
  read_with_kernel(src.data(), src.bytes(), sink.data<uint32_t>(), s.get());
  uint32_t got = 0;
  copy_to_host(&got, sink.data(), 4, s);
  s.synchronize();
  EXPECT_EQ(got, 0x5A5A5A5Au) << "the sink was written without the magic";
  EXPECT_THROW(read_with_kernel(src.data(), 24, sink.data<uint32_t>(), s.get()), InputError);
  EXPECT_THROW(read_with_kernel(src.data(), 32, nullptr, s.get()), InputError);
  EXPECT_THROW(copy_with_kernel(sink.data(), src.data<uint8_t>() + 4, 16, s.get()), InputError);
}

TEST(CudaRuntime, OutOfMemoryIsADeviceErrorNamingTheBuffer) {
  FP4KIT_REQUIRE_GPU();
  try {
    DeviceBuffer huge(size_t{1} << 50, "test buffer of a petabyte");
    FAIL() << "a 1 PiB allocation succeeded";
  } catch (const DeviceError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out of GPU memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("test buffer of a petabyte"), std::string::npos) << msg;
  }
  // The failed allocation leaves the device usable.
  DeviceBuffer ok(1 << 20, "after");
  Stream s;
  fill_bytes(ok.data(), 0xAB, ok.bytes(), s);
  s.synchronize();
}

// Inside a scope, buffers follow the scope's stream (nested scopes: the innermost), outside it and
// inside a PlainAllocations they are cudaMalloc'ed; both count in the bytes in use and give them
// back; reused pool memory holds what is written to it in stream order.
TEST(CudaRuntime, StreamOrderedBuffersFollowTheirScopeAndCount) {
  FP4KIT_REQUIRE_GPU();
  Stream s, t;
  const size_t before = device_bytes_in_use();
  std::vector<uint32_t> host(1 << 18);
  std::iota(host.begin(), host.end(), 7u);
  {
    const StreamOrderedAllocations outer(s);
    for (int round = 0; round < 50; ++round) {  // the pool hands the same memory out again
      DeviceBuffer a(host.size() * 4, "ordered a");
      EXPECT_EQ(a.stream_order(), s.get());
      EXPECT_EQ(device_bytes_in_use(), before + a.bytes());
      fill_bytes(a.data(), 0xFF, a.bytes(), s);
      copy_to_device(a.data(), host.data(), a.bytes(), s);
      DeviceBuffer b(host.size() * 4, "ordered b");
      copy_on_device(b.data(), a.data(), a.bytes(), s);
      const std::vector<uint32_t> back = testing::read_back<uint32_t>(b.data(), host.size(), s);
      ASSERT_EQ(back, host) << "round " << round;
    }
    {
      const StreamOrderedAllocations inner(t);
      const DeviceBuffer c(64, "inner");
      EXPECT_EQ(c.stream_order(), t.get());
    }
    {
      const PlainAllocations plain;
      const DeviceBuffer p(64, "plain inside");
      EXPECT_EQ(p.stream_order(), nullptr);
    }
    const DeviceBuffer d(64, "outer again");
    EXPECT_EQ(d.stream_order(), s.get());
    DeviceBuffer moved = DeviceBuffer(128, "moved");
    moved = DeviceBuffer(256, "moved over");  // the first one goes back in order
    EXPECT_EQ(moved.bytes(), 256u);
    EXPECT_EQ(moved.stream_order(), s.get());
  }
  const DeviceBuffer plain(64, "plain");
  EXPECT_EQ(plain.stream_order(), nullptr);
  EXPECT_EQ(device_bytes_in_use(), before + plain.bytes());
  s.synchronize();
  release_pooled_device_memory();
}

TEST(CudaRuntime, StreamOrderedOutOfMemoryIsADeviceErrorNamingTheBuffer) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  const size_t before = device_bytes_in_use();
  {
    const StreamOrderedAllocations ordered(s);
    const size_t twice_the_device = 2 * require_device().total_memory;
    try {
      DeviceBuffer huge(twice_the_device, "ordered buffer of twice the device");
      FAIL() << "an allocation of twice the device's memory succeeded";
    } catch (const DeviceError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("out of GPU memory"), std::string::npos) << msg;
      EXPECT_NE(msg.find("ordered buffer of twice the device"), std::string::npos) << msg;
    }
    DeviceBuffer ok(1 << 20, "after");
    fill_bytes(ok.data(), 0xAB, ok.bytes(), s);
  }
  s.synchronize();
  EXPECT_EQ(device_bytes_in_use(), before);
}

// Widening gathers against the host's exact conversions, bit for bit, over every 16-bit pattern
// (NaN, infinities and subnormals among them) and repeated, out-of-order rows.
TEST(CudaRuntime, GatherRowsWidenedEqualsTheHostConversionBitForBit) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  const int64_t rows = 1024, w = 64;  // 65536 values: every 16-bit pattern once
  std::vector<uint16_t> table(static_cast<size_t>(rows * w));
  std::iota(table.begin(), table.end(), uint16_t{0});
  const std::vector<int32_t> pick = {1023, 0, 5, 5, 511, 1, 1022, 300, 0};
  const int64_t n = static_cast<int64_t>(pick.size());
  const DeviceBuffer d_table = testing::upload(table, s, "table"), d_pick = testing::upload(pick, s, "rows");
  DeviceBuffer out(static_cast<size_t>(n * w) * 4, "gathered");
  for (const DType dtype : {DType::BF16, DType::F16}) {
    gather_rows_widened(d_table.data(), dtype, d_pick.data<int32_t>(), n, w, out.data<float>(), s.get());
    const std::vector<float> got = testing::read_back<float>(out.data(), static_cast<size_t>(n * w), s);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < w; ++j) {
        const uint16_t bits = table[static_cast<size_t>(pick[static_cast<size_t>(i)] * w + j)];
        const float want = dtype == DType::BF16 ? BF16{bits}.to_float() : F16{bits}.to_float();
        const float have = got[static_cast<size_t>(i * w + j)];
        // NaN payloads may differ; NaN must stay NaN, everything else equal bit for bit.
        if (std::isnan(want)) ASSERT_TRUE(std::isnan(have)) << dtype_name(dtype) << " bits " << bits;
        else ASSERT_EQ(f32_bits(have), f32_bits(want)) << dtype_name(dtype) << " bits " << bits;
      }
  }
  // F32 rows are copied as they are.
  std::vector<float> f32 = testing::random_floats(static_cast<size_t>(rows * w), 3);
  f32[5] = std::numeric_limits<float>::quiet_NaN();
  const DeviceBuffer d_f32 = testing::upload(f32, s, "f32 table");
  gather_rows_widened(d_f32.data(), DType::F32, d_pick.data<int32_t>(), n, w, out.data<float>(), s.get());
  const std::vector<float> got = testing::read_back<float>(out.data(), static_cast<size_t>(n * w), s);
  for (int64_t i = 0; i < n * w; ++i)
    ASSERT_EQ(f32_bits(got[static_cast<size_t>(i)]),
              f32_bits(f32[static_cast<size_t>(pick[static_cast<size_t>(i / w)] * w + i % w)]))
        << i;
  EXPECT_THROW(gather_rows_widened(d_table.data(), DType::U16, d_pick.data<int32_t>(), n, w, out.data<float>(), s.get()),
               InputError);
}

// Repeated rows (the embedding written into every hyper-connection stream): each of n rows `times`
// times in a row, bit for bit (NaN and -0 among the values), and nothing past the end written.
TEST(CudaRuntime, RepeatRowsWritesEachRowTimesInARow) {
  FP4KIT_REQUIRE_GPU();
  Stream s;
  const std::vector<std::tuple<int64_t, int64_t, int64_t>> shapes = {{1, 4096, 4}, {3, 7, 4}, {5, 33, 1}, {2, 1, 3}};
  for (const auto& [n, w, times] : shapes) {
    std::vector<float> src = testing::random_floats(static_cast<size_t>(n * w), 9);
    src[0] = std::numeric_limits<float>::quiet_NaN();
    if (src.size() > 1) src[1] = -0.0f;
    const DeviceBuffer d_src = testing::upload(src, s, "rows");
    const size_t count = static_cast<size_t>(n * times * w);
    DeviceBuffer out((count + 1) * 4, "repeated");
    fill_bytes(out.data(), 0xFF, out.bytes(), s);
    repeat_rows(d_src.data<float>(), n, w, times, out.data<float>(), s.get());
    const std::vector<uint32_t> got = testing::read_back<uint32_t>(out.data(), count + 1, s);
    for (size_t e = 0; e < count; ++e)
      ASSERT_EQ(got[e], f32_bits(src[e / static_cast<size_t>(times * w) * static_cast<size_t>(w) + e % static_cast<size_t>(w)]))
          << "n " << n << " w " << w << " times " << times << " at " << e;
    EXPECT_EQ(got[count], 0xFFFFFFFFu) << "written past the end";
  }
}

}  // namespace
}  // namespace fp4kit::cuda
