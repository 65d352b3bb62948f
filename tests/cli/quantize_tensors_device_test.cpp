// `fp4kit quantize-tensors --device cuda`: the same output file as --device cpu where a GPU is
// present, one clear error and exit code 2 where there is none (or no CUDA in the build).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"
#include "run_command.h"
#include "source_bytes.h"
#include "test_data.h"

namespace fp4kit {
namespace {

using testing::run_fp4kit;

std::vector<uint8_t> tensor_bytes(size_t n, DType dtype, float sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return testing::source_bytes(v, dtype);
}

// BF16, F16 and F32 matrices, a w1/w3 pair (fused global scale), an all-zero matrix and a vector
// that is kept as it is.
std::string write_input(const std::string& dir) {
  struct T {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<T> tensors = {
      {"layers.0.attn.wq.weight", DType::BF16, {96, 256}, tensor_bytes(96 * 256, DType::BF16, 0.02f, 1)},
      {"layers.0.ffn.w1.weight", DType::BF16, {64, 128}, tensor_bytes(64 * 128, DType::BF16, 0.05f, 2)},
      {"layers.0.ffn.w3.weight", DType::BF16, {64, 128}, tensor_bytes(64 * 128, DType::BF16, 3.0f, 3)},
      {"layers.0.ffn.w2.weight", DType::F16, {128, 64}, tensor_bytes(128 * 64, DType::F16, 1e-3f, 4)},
      {"layers.0.proj.weight", DType::F32, {48, 160}, tensor_bytes(48 * 160, DType::F32, 300.0f, 5)},
      {"layers.0.zero.weight", DType::BF16, {16, 32}, std::vector<uint8_t>(16 * 32 * 2, 0)},
      {"layers.0.norm.weight", DType::F32, {256}, tensor_bytes(256, DType::F32, 1.0f, 6)},
  };
  const std::string path = dir + "/in.safetensors";
  io::SafetensorsWriter w(path);
  for (const auto& t : tensors) w.declare(t.name, t.dtype, t.shape);
  w.begin();
  for (const auto& out : w.layout())
    for (const auto& t : tensors)
      if (t.name == out.name) w.write(t.name, std::as_bytes(std::span(t.bytes)));
  w.commit();
  return path;
}

std::vector<char> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string hex_byte(char c) {
  static const char* kDigits = "0123456789abcdef";
  const auto b = static_cast<unsigned char>(c);
  return std::string("0x") + kDigits[b >> 4] + kDigits[b & 15];
}

// Where two output files differ: the differing byte count, then for the first few differences the
// file offset, the tensor (from `want`'s header) and the byte's index inside it, and both bytes.
std::string describe_difference(const std::string& want_path, const std::vector<char>& want,
                                const std::vector<char>& got) {
  std::ostringstream o;
  const size_t n = std::min(want.size(), got.size());
  size_t differing = 0;
  std::vector<size_t> first;
  for (size_t i = 0; i < n; ++i)
    if (want[i] != got[i] && differing++ < 8) first.push_back(i);
  o << differing << " differing bytes in the first " << n;
  if (want.size() < 8) return o.str();
  uint64_t header = 0;
  std::memcpy(&header, want.data(), 8);  // little endian header length
  const uint64_t data_begin = 8 + header;
  std::vector<io::TensorInfo> tensors;
  try {
    tensors = io::SafetensorsFile::open(want_path).tensors();
  } catch (const std::exception& e) {
    o << " (cannot read the header: " << e.what() << ")";
  }
  for (size_t i : first) {
    o << "\n  offset " << i << ": want " << hex_byte(want[i]) << " got " << hex_byte(got[i]);
    if (i < data_begin) {
      o << " in the header";
      continue;
    }
    for (const auto& t : tensors)
      if (i - data_begin >= t.begin && i - data_begin < t.end) {
        const uint64_t at = i - data_begin - t.begin;
        o << " in '" << t.name << "' " << dtype_name(t.dtype) << " " << io::shape_string(t.shape) << " byte " << at;
      }
  }
  return o.str();
}

TEST(QuantizeTensorsCuda, SameFileAsTheCpuOrOneClearError) {
  const std::string dir = testing::fresh_temp_dir("qt-device");
  const std::string in = write_input(dir);
  std::string why_not;
  const bool gpu = cuda::probe(0, &why_not).has_value();
  if (!gpu) {
    const auto r = run_fp4kit("quantize-tensors " + in + " " + dir + "/gpu.safetensors --device cuda");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("error: --device cuda: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(why_not), std::string::npos) << r.output;
    EXPECT_FALSE(std::ifstream(dir + "/gpu.safetensors").good());
    GTEST_SKIP() << "no GPU to compare the output on: " << why_not;
  }
  for (const char* numerics : {"modelopt", "modelopt-cuda", "compressed-tensors"}) {
    const std::string cpu = dir + "/cpu-" + numerics + ".safetensors", gpu_out = dir + "/gpu-" + numerics + ".safetensors";
    const auto rc = run_fp4kit("quantize-tensors " + in + " " + cpu + " --numerics " + numerics + " --device cpu --quiet");
    ASSERT_EQ(rc.exit_code, 0) << rc.output;
    const auto rg = run_fp4kit("quantize-tensors " + in + " " + gpu_out + " --numerics " + numerics +
                               " --device cuda --quiet --json " + dir + "/report.json");
    ASSERT_EQ(rg.exit_code, 0) << rg.output;
    const auto a = file_bytes(cpu), b = file_bytes(gpu_out);
    ASSERT_FALSE(a.empty());
    EXPECT_TRUE(a == b) << numerics << ": the --device cuda file differs from the --device cpu one (" << b.size()
                        << " vs " << a.size() << " bytes): " << (a == b ? "" : describe_difference(cpu, a, b));
    std::ifstream report(dir + "/report.json");
    const std::string text{std::istreambuf_iterator<char>(report), std::istreambuf_iterator<char>()};
    EXPECT_NE(text.find("\"device\": \"cuda\""), std::string::npos) << text;
  }
}

TEST(QuantizeTensorsCuda, UnknownDeviceIsAUsageError) {
  const std::string dir = testing::fresh_temp_dir("qt-device-bad");
  const std::string in = write_input(dir);
  const auto r = run_fp4kit("quantize-tensors " + in + " " + dir + "/o.safetensors --device tpu");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--device"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tpu"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace fp4kit
