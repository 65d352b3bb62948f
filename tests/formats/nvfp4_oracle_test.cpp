// NVFP4 quantization against the bytes ModelOpt and compressed-tensors produce (tests/data/oracles/nvfp4).
#include <gtest/gtest.h>

#include <cmath>

#include "formats/e2m1.h"
#include "formats/e4m3.h"
#include "formats/nvfp4.h"
#include "isa_cases.h"
#include "oracle_file.h"

namespace fp4kit {
namespace {

using testing::as_bytes_vec;
using testing::BytesEqual;
using testing::OracleFile;

const char* const kCases[] = {"normal_s1", "normal_s1e-3", "normal_s300", "student_t3", "zero_blocks",
                              "scale_edges", "underflow", "neg_zero", "ties", "all_zero",
                              "fp32_normal", "gate", "up"};

const OracleFile& modelopt() {
  static OracleFile f("oracles/nvfp4/modelopt_nvfp4.safetensors");
  return f;
}
const OracleFile& compressed() {
  static OracleFile f("oracles/nvfp4/compressed_tensors_nvfp4.safetensors");
  return f;
}

struct Input {
  std::vector<uint8_t> bytes;
  DType dtype;
  size_t n;
  FloatSpan span() const { return FloatSpan{bytes.data(), dtype, n}; }
};

Input input(const OracleFile& f, const std::string& c) {
  const auto& t = f.info("in." + c);
  return Input{f.bytes("in." + c), t.dtype, static_cast<size_t>(t.numel())};
}

// gate and up are a fused pair: one global scale from the larger amax.
float case_amax(const OracleFile& f, const std::string& c, Isa isa) {
  const auto& k = nvfp4_kernels(isa);
  if (c == "gate" || c == "up")
    return std::max(k.amax(input(f, "gate").span()), k.amax(input(f, "up").span()));
  return k.amax(input(f, c).span());
}

class Nvfp4Oracle : public ::testing::TestWithParam<std::tuple<const char*, Isa>> {
 protected:
  void SetUp() override {
    if (!isa_supported(std::get<1>(GetParam()))) GTEST_SKIP() << "CPU lacks this ISA";
  }
};

TEST_P(Nvfp4Oracle, ModelOptCpuAndCuda) {
  const std::string c = std::get<0>(GetParam());
  const Isa isa = std::get<1>(GetParam());
  const auto& f = modelopt();
  const Input in = input(f, c);
  const float amax = case_amax(f, c, isa);
  for (auto [prefix, numerics] : {std::pair{"out.", Nvfp4Numerics::ModelOpt}, std::pair{"cuda.", Nvfp4Numerics::ModelOptCuda}}) {
    const std::string p = prefix + c;
    const Nvfp4Scaling sc = nvfp4_scaling(amax, numerics, in.dtype);
    EXPECT_TRUE(BytesEqual(as_bytes_vec(std::vector<float>{sc.global}), f.bytes(p + ".weight_scale_2"))) << p;
    std::vector<uint8_t> packed(in.n / 2), scales(in.n / 16);
    nvfp4_kernels(isa).quantize(in.span(), sc, packed.data(), scales.data());
    EXPECT_TRUE(BytesEqual(scales, f.bytes(p + ".weight_scale"))) << p << ".weight_scale";
    EXPECT_TRUE(BytesEqual(packed, f.bytes(p + ".weight"))) << p << ".weight";
    if (numerics == Nvfp4Numerics::ModelOpt && f.has("dq." + c)) {
      std::vector<float> dq(in.n);
      nvfp4_kernels(isa).dequantize(packed.data(), scales.data(), in.n, sc, dq.data());
      EXPECT_TRUE(BytesEqual(as_bytes_vec(dq), f.bytes("dq." + c))) << "dq." << c;
    }
  }
}

TEST_P(Nvfp4Oracle, CompressedTensors) {
  const std::string c = std::get<0>(GetParam());
  const Isa isa = std::get<1>(GetParam());
  const auto& f = compressed();
  const Input in = input(f, c);
  const float amax = case_amax(f, c, isa);
  const std::string p = "out." + c;
  const Nvfp4Scaling sc = nvfp4_scaling(amax, Nvfp4Numerics::CompressedTensors, in.dtype);
  EXPECT_TRUE(BytesEqual(as_bytes_vec(std::vector<float>{sc.global}), f.bytes(p + ".weight_global_scale")));
  std::vector<uint8_t> packed(in.n / 2), scales(in.n / 16);
  nvfp4_kernels(isa).quantize(in.span(), sc, packed.data(), scales.data());
  EXPECT_TRUE(BytesEqual(scales, f.bytes(p + ".weight_scale"))) << p << ".weight_scale";
  EXPECT_TRUE(BytesEqual(packed, f.bytes(p + ".weight_packed"))) << p << ".weight_packed";
  if (f.has("dq." + c)) {
    std::vector<float> dq(in.n);
    nvfp4_kernels(isa).dequantize(packed.data(), scales.data(), in.n, sc, dq.data());
    std::vector<uint16_t> dq16(in.n);
    for (size_t i = 0; i < in.n; ++i) dq16[i] = BF16::from_float(dq[i]).bits;
    EXPECT_TRUE(BytesEqual(as_bytes_vec(dq16), f.bytes("dq." + c))) << "dq." << c;
  }
}

INSTANTIATE_TEST_SUITE_P(AllCases, Nvfp4Oracle,
                         ::testing::Combine(::testing::ValuesIn(kCases), ::testing::ValuesIn(all_isas())),
                         [](const auto& param_info) {
                           std::string n = std::get<0>(param_info.param);
                           for (auto& ch : n)
                             if (ch == '-') ch = '_';
                           return n + "_" + std::string(isa_name(std::get<1>(param_info.param)));
                         });

TEST(Nvfp4Probe, CastFp4) {
  const auto in = modelopt().f32("probe.cast_fp4.in");
  const auto want = modelopt().bytes("probe.cast_fp4.out");
  ASSERT_EQ(in.size(), want.size());
  for (size_t i = 0; i < in.size(); ++i) EXPECT_EQ(E2M1::from_float(in[i]).bits, want[i]) << "input " << in[i];
}

TEST(Nvfp4Probe, ScaleCast) {
  const auto in = modelopt().f32("probe.scale_cast.in");
  const auto want = modelopt().bytes("probe.scale_cast.out");
  ASSERT_EQ(in.size(), want.size());
  for (size_t i = 0; i < in.size(); ++i) {
    float s = in[i];
    s = s < 0x1p-9f ? 0x1p-9f : (s > 448.0f ? 448.0f : s);  // _cast_per_block_scale_to_fp8's clamp
    EXPECT_EQ(E4M3::from_float(s).bits, want[i]) << "input " << in[i];
  }
}

TEST(Nvfp4Probe, WeightScale2EveryBf16Amax) {
  const auto amax = modelopt().f32("probe.wsf2.amax");
  const auto cpu = modelopt().f32("probe.wsf2.cpu");
  const auto cuda = modelopt().f32("probe.wsf2.cuda");
  size_t differ = 0;
  for (size_t i = 0; i < amax.size(); ++i) {
    const float c = nvfp4_global_scale(amax[i], Nvfp4Numerics::ModelOpt, DType::BF16);
    const float g = nvfp4_global_scale(amax[i], Nvfp4Numerics::ModelOptCuda, DType::BF16);
    ASSERT_EQ(f32_bits(c), f32_bits(cpu[i])) << "amax " << amax[i];
    ASSERT_EQ(f32_bits(g), f32_bits(cuda[i])) << "amax " << amax[i];
    differ += c != g;
  }
  EXPECT_EQ(amax.size(), 32512u);
  EXPECT_EQ(differ, 6818u);  // the README's count of amax values where CPU and CUDA disagree
}

TEST(Nvfp4Probe, CompressedTensorsGlobalScaleEveryBf16Absmax) {
  const auto absmax = compressed().bytes("probe.gparam.absmax_bf16");
  const auto want = compressed().f32("probe.gparam.global_scale");
  ASSERT_EQ(absmax.size() / 2, want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const float a = BF16{static_cast<uint16_t>(absmax[2 * i] | absmax[2 * i + 1] << 8)}.to_float();
    ASSERT_EQ(f32_bits(nvfp4_global_scale(a, Nvfp4Numerics::CompressedTensors, DType::BF16)), f32_bits(want[i]))
        << "absmax " << a;
  }
}

}  // namespace
}  // namespace fp4kit
