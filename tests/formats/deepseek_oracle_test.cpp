// DeepSeek FP8 / FP4 sources against the bytes of DeepSeek's official code and ModelOpt's DeepSeek
// scripts (tests/data/oracles/nvfp4/deepseek_*.safetensors).
#include <gtest/gtest.h>

#include <cmath>

#include "formats/bf16.h"
#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "formats/nvfp4.h"
#include "isa_cases.h"
#include "oracle_file.h"

namespace fp4kit {
namespace {

using testing::as_bytes_vec;
using testing::BytesEqual;
using testing::OracleFile;

const OracleFile& fp8_file() {
  static OracleFile f("oracles/nvfp4/deepseek_fp8_to_nvfp4.safetensors");
  return f;
}
const OracleFile& fp4_file() {
  static OracleFile f("oracles/nvfp4/deepseek_fp4_experts.safetensors");
  return f;
}

struct Fp8Case {
  std::vector<uint8_t> weight, scales;
  Fp8BlockShape shape;
};

Fp8Case fp8_case(const std::string& c) {
  const auto& f = fp8_file();
  const bool v3 = c.rfind("v3", 0) == 0;
  const std::string w = "fp8." + c + ".weight";
  const auto& info = f.info(w);
  Fp8Case out{f.bytes(w), f.bytes("fp8." + c + (v3 ? ".weight_scale_inv" : ".scale")), {}};
  out.shape = {static_cast<size_t>(info.shape[0]), static_cast<size_t>(info.shape[1]),
               v3 ? Fp8ScaleKind::F32 : Fp8ScaleKind::E8M0};
  return out;
}

class DeepSeekFp8 : public ::testing::TestWithParam<std::tuple<const char*, Isa>> {
 protected:
  void SetUp() override {
    if (!isa_supported(std::get<1>(GetParam()))) GTEST_SKIP() << "CPU lacks this ISA";
  }
};

// The official dequant: bf16(f32(e4m3) * scale), ragged 128-blocks included.
TEST_P(DeepSeekFp8, OfficialDequant) {
  const std::string c = std::get<0>(GetParam());
  const auto& k = fp8_block_kernels(std::get<1>(GetParam()));
  const Fp8Case in = fp8_case(c);
  const size_t n = in.shape.rows * in.shape.cols;
  std::vector<uint16_t> bf16(n);
  k.dequantize_bf16(in.weight.data(), in.scales.data(), in.shape, 0, in.shape.rows, bf16.data());
  EXPECT_TRUE(BytesEqual(as_bytes_vec(bf16), fp8_file().bytes("bf16." + c)));
  if (fp8_file().has("f32." + c)) {
    std::vector<float> f32(n);
    k.dequantize_f32(in.weight.data(), in.scales.data(), in.shape, 0, in.shape.rows, f32.data());
    EXPECT_TRUE(BytesEqual(as_bytes_vec(f32), fp8_file().bytes("f32." + c)));
  }
}

// ModelOpt's DeepSeek V3 script: quantizes the f32 dequant, with the amax of the BF16 dequant (w1/w3
// fused) and weight_scale_2 computed on the GPU. V4 (E8M0 scales): ModelOpt on the BF16 dequant, CPU.
TEST_P(DeepSeekFp8, ModelOptNvfp4) {
  const std::string c = std::get<0>(GetParam());
  const Isa isa = std::get<1>(GetParam());
  const bool v3 = c.rfind("v3", 0) == 0;
  const auto& f = fp8_file();
  const Fp8Case in = fp8_case(c);
  const size_t n = in.shape.rows * in.shape.cols;
  std::vector<uint16_t> bf16(n);
  std::vector<float> f32(n);
  fp8_block_kernels(isa).dequantize_bf16(in.weight.data(), in.scales.data(), in.shape, 0, in.shape.rows, bf16.data());
  fp8_block_kernels(isa).dequantize_f32(in.weight.data(), in.scales.data(), in.shape, 0, in.shape.rows, f32.data());

  // amax of the BF16 dequant, fused over the gate/up (w1/w3) pair
  auto bf16_amax = [&](const std::string& name) {
    const Fp8Case other = fp8_case(name);
    std::vector<uint16_t> o(other.shape.rows * other.shape.cols);
    fp8_block_kernels(isa).dequantize_bf16(other.weight.data(), other.scales.data(), other.shape, 0, other.shape.rows, o.data());
    return nvfp4_kernels(isa).amax(FloatSpan{o.data(), DType::BF16, o.size()});
  };
  float amax = bf16_amax(c);
  const std::map<std::string, std::string> partner = {{"v3_gate", "v3_up"}, {"v3_up", "v3_gate"}, {"v4_w1", "v4_w3"}, {"v4_w3", "v4_w1"}};
  if (partner.count(c)) amax = std::max(amax, bf16_amax(partner.at(c)));
  EXPECT_EQ(f32_bits(amax), f32_bits(f.scalar("amax." + c)));

  const Nvfp4Scaling sc = nvfp4_scaling(amax, v3 ? Nvfp4Numerics::ModelOptCuda : Nvfp4Numerics::ModelOpt, DType::BF16);
  EXPECT_EQ(f32_bits(sc.global), f32_bits(f.scalar("out." + c + ".weight_scale_2")));
  std::vector<uint8_t> packed(n / 2), scales(n / 16);
  const FloatSpan source = v3 ? FloatSpan{f32.data(), DType::F32, n} : FloatSpan{bf16.data(), DType::BF16, n};
  nvfp4_kernels(isa).quantize(source, sc, packed.data(), scales.data());
  EXPECT_TRUE(BytesEqual(scales, f.bytes("out." + c + ".weight_scale")));
  EXPECT_TRUE(BytesEqual(packed, f.bytes("out." + c + ".weight")));
  if (v3) {  // the same scale on the official BF16 dequant gives other bytes, also recorded
    nvfp4_kernels(isa).quantize(FloatSpan{bf16.data(), DType::BF16, n}, sc, packed.data(), scales.data());
    EXPECT_TRUE(BytesEqual(scales, f.bytes("outbf16." + c + ".weight_scale")));
    EXPECT_TRUE(BytesEqual(packed, f.bytes("outbf16." + c + ".weight")));
  }
}

const char* const kFp8Cases[] = {"v3_a", "v3_b", "v3_gate", "v3_up", "v4_a", "v4_b", "v4_w1", "v4_w3"};

auto param_name = [](const auto& param_info) {
  std::string n = std::get<0>(param_info.param);
  for (auto& ch : n)
    if (ch == '.' || ch == '-') ch = '_';
  return n + "_" + std::string(isa_name(std::get<1>(param_info.param)));
};

INSTANTIATE_TEST_SUITE_P(AllCases, DeepSeekFp8,
                         ::testing::Combine(::testing::ValuesIn(kFp8Cases), ::testing::ValuesIn(all_isas())),
                         param_name);

// ---- V4 FP4 experts -------------------------------------------------------------------------

const char* const kExperts[] = {"layers.0.ffn.experts.0.w1", "layers.0.ffn.experts.0.w2", "layers.0.ffn.experts.0.w3",
                                "layers.0.ffn.experts.1.w1", "layers.0.ffn.experts.1.w2", "layers.0.ffn.experts.1.w3"};

std::string sibling(const std::string& name) {
  std::string s = name;
  const char last = s.back();
  if (last == '1') s.back() = '3';
  else if (last == '3') s.back() = '1';
  return s;
}

class DeepSeekFp4 : public ::testing::TestWithParam<std::tuple<const char*, Isa>> {
 protected:
  void SetUp() override {
    if (!isa_supported(std::get<1>(GetParam()))) GTEST_SKIP() << "CPU lacks this ISA";
  }
};

TEST_P(DeepSeekFp4, OfficialDequantAndFp8Repack) {
  const std::string e = std::get<0>(GetParam());
  const auto& f = fp4_file();
  const auto packed = f.bytes("fp4." + e + ".weight"), scales = f.bytes("fp4." + e + ".scale");
  const auto& info = f.info("fp4." + e + ".weight");
  const size_t rows = static_cast<size_t>(info.shape[0]), cols = static_cast<size_t>(info.shape[1]) * 2;
  std::vector<uint16_t> bf16(rows * cols);
  mxfp4_kernels(std::get<1>(GetParam())).dequantize_bf16(packed.data(), scales.data(), rows * cols, bf16.data());
  EXPECT_TRUE(BytesEqual(as_bytes_vec(bf16), f.bytes("bf16." + e)));

  std::vector<uint8_t> fp8(rows * cols), fp8_scales(fp8_scale_dim(rows) * fp8_scale_dim(cols));
  mxfp4_to_fp8_block(packed.data(), scales.data(), rows, cols, fp8.data(), fp8_scales.data());
  EXPECT_TRUE(BytesEqual(fp8, f.bytes("fp8." + e + ".weight")));
  EXPECT_TRUE(BytesEqual(fp8_scales, f.bytes("fp8." + e + ".scale")));
}

// ModelOpt's V4 exporter, default path: its own MXFP4 dequant to BF16, requantized with the amax of
// that dequant (w1/w3 fused), on the CPU; input_scale from the calibrated input amax (2.0 here).
TEST_P(DeepSeekFp4, ModelOptRequant) {
  const std::string e = std::get<0>(GetParam());
  const Isa isa = std::get<1>(GetParam());
  const auto& f = fp4_file();
  auto dequant = [&](const std::string& name) {
    const auto packed = f.bytes("fp4." + name + ".weight"), scales = f.bytes("fp4." + name + ".scale");
    std::vector<uint16_t> out(packed.size() * 2);
    mxfp4_kernels(isa).dequantize_bf16(packed.data(), scales.data(), out.size(), out.data());
    return out;
  };
  const auto bf16 = dequant(e);
  float amax = nvfp4_kernels(isa).amax(FloatSpan{bf16.data(), DType::BF16, bf16.size()});
  if (sibling(e) != e) {
    const auto other = dequant(sibling(e));
    amax = std::max(amax, nvfp4_kernels(isa).amax(FloatSpan{other.data(), DType::BF16, other.size()}));
  }
  const Nvfp4Scaling sc = nvfp4_scaling(amax, Nvfp4Numerics::ModelOpt, DType::BF16);
  const std::string p = "mo_requant." + e;
  EXPECT_EQ(f32_bits(sc.global), f32_bits(f.scalar(p + ".weight_scale_2")));
  EXPECT_EQ(f32_bits(nvfp4_global_scale(2.0f, Nvfp4Numerics::ModelOpt, DType::BF16)), f32_bits(f.scalar(p + ".input_scale")));
  std::vector<uint8_t> packed(bf16.size() / 2), scales(bf16.size() / 16);
  nvfp4_kernels(isa).quantize(FloatSpan{bf16.data(), DType::BF16, bf16.size()}, sc, packed.data(), scales.data());
  EXPECT_TRUE(BytesEqual(scales, f.bytes(p + ".weight_scale")));
  EXPECT_TRUE(BytesEqual(packed, f.bytes(p + ".weight")));
}

INSTANTIATE_TEST_SUITE_P(AllExperts, DeepSeekFp4,
                         ::testing::Combine(::testing::ValuesIn(kExperts), ::testing::ValuesIn(all_isas())),
                         param_name);

// ModelOpt's V4 exporter with --cast_mxfp4_to_nvfp4: weight_scale_2 = 2^(k_max-8) over w1 and w3.
TEST(DeepSeekFp4Cast, LosslessCastMatchesModelOpt) {
  const auto& f = fp4_file();
  Mxfp4CastStats total;
  for (const std::string e : kExperts) {
    const auto packed = f.bytes("fp4." + e + ".weight"), scales = f.bytes("fp4." + e + ".scale");
    int k_max = mxfp4_max_exponent(scales.data(), scales.size(), 0);
    if (sibling(e) != e) {
      const auto other = f.bytes("fp4." + sibling(e) + ".scale");
      k_max = std::max(k_max, mxfp4_max_exponent(other.data(), other.size(), k_max));
    }
    const float wsf2 = mxfp4_cast_weight_scale_2(k_max);
    const std::string p = "mo_cast." + e;
    EXPECT_EQ(f32_bits(wsf2), f32_bits(f.scalar(p + ".weight_scale_2"))) << e;
    const size_t n = packed.size() * 2;
    std::vector<uint8_t> out_packed(n / 2), out_scales(n / 16);
    total += mxfp4_to_nvfp4_cast(packed.data(), scales.data(), n, wsf2, k_max, out_packed.data(), out_scales.data());
    EXPECT_TRUE(BytesEqual(out_scales, f.bytes(p + ".weight_scale"))) << e;
    EXPECT_TRUE(BytesEqual(out_packed, f.bytes(p + ".weight"))) << e;
  }
  EXPECT_EQ(total.groups, 12288u);
  EXPECT_EQ(total.reported_lossless, 10041u);  // what ModelOpt's exporter logs for these tensors
  EXPECT_LE(total.exact_groups, total.groups);
  EXPECT_GT(total.exact_groups, 0u);
}

}  // namespace
}  // namespace fp4kit
