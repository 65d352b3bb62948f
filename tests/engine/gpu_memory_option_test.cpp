// --gpu-memory's parser (plain C++, so every build tests it): sizes in decimal and binary units,
// a share of the device, and the malformed values named in an InputError.
#include <gtest/gtest.h>

#include "base/error.h"
#include "gpu_engine/gpu_memory.h"

namespace fp4kit {
namespace {

using gpu_engine::parse_gpu_memory;

TEST(GpuMemoryOption, SizesAndShares) {
  EXPECT_FALSE(parse_gpu_memory("").set());
  EXPECT_EQ(parse_gpu_memory("80GB").bytes, size_t{80'000'000'000});
  EXPECT_EQ(parse_gpu_memory("80g").bytes, size_t{80'000'000'000});
  EXPECT_EQ(parse_gpu_memory("80GiB").bytes, size_t{80} << 30);
  EXPECT_EQ(parse_gpu_memory("512MiB").bytes, size_t{512} << 20);
  EXPECT_EQ(parse_gpu_memory("1.5TB").bytes, size_t{1'500'000'000'000});
  EXPECT_EQ(parse_gpu_memory("12.5%").fraction, 0.125);
  EXPECT_EQ(parse_gpu_memory("123456").bytes, size_t{123456});
  const auto share = parse_gpu_memory("90%");
  EXPECT_TRUE(share.set());
  EXPECT_EQ(share.bytes, size_t{0});
  EXPECT_EQ(share.resolve(1000), size_t{900});
  EXPECT_EQ(parse_gpu_memory("2GB").resolve(1000), size_t{2'000'000'000});
}

TEST(GpuMemoryOption, MalformedValuesAreNamed) {
  for (const char* bad : {"0", "-5GB", "abc", "120%", "0%", "%", "5 %", "10XB", "nan", "inf", "GB", "0.1"}) {
    try {
      parse_gpu_memory(bad);
      ADD_FAILURE() << bad << ": no error";
    } catch (const InputError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("--gpu-memory"), std::string::npos) << m;
      EXPECT_NE(m.find(bad), std::string::npos) << m;
    }
  }
}

}  // namespace
}  // namespace fp4kit
