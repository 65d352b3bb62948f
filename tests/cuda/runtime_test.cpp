// The device runtime: buffers, copies, and errors that name what failed.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "base/error.h"
#include "cuda/runtime.h"
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

}  // namespace
}  // namespace fp4kit::cuda
