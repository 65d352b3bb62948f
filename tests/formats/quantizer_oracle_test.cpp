// The FP8-block and MXFP4 quantizers that `synth` writes source checkpoints with, against an oracle
// made outside fp4kit (tests/data/oracles/quantizers, by scripts/reference/quantizer_oracle.py):
// FP8 blocks by torch's own E4M3 cast on DeepSeek's scale rule, edge blocks, ties, subnormals, zero,
// tiny and huge blocks included; MXFP4 by ModelOpt's MXFP4QTensor on tie-free, zero-free inputs (the
// only place its rule and DeepSeek's differ). Every byte, through the scalar reference and every
// SIMD path this CPU runs.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "isa_cases.h"
#include "oracle_file.h"
#include "test_data.h"

namespace fp4kit {
namespace {

using testing::BytesEqual;
using testing::OracleFile;

constexpr const char* kOracle = "oracles/quantizers/quantizer_oracle.safetensors";

class QuantizerOracle : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(testing::test_data(kOracle)))
        << "tests/data/" << kOracle << " is missing (made by scripts/reference/quantizer_oracle.py)";
    file_ = std::make_unique<OracleFile>(kOracle);
  }
  std::unique_ptr<OracleFile> file_;
};

TEST_F(QuantizerOracle, Fp8BlocksEqualTorchsE4m3CastOnDeepSeeksScales) {
  const OracleFile& f = *file_;
  const io::TensorInfo& info = f.info("fp8.input");
  ASSERT_EQ(info.shape.size(), 2u);
  const std::vector<uint8_t> input = f.bytes("fp8.input");
  const size_t rows = static_cast<size_t>(info.shape[0]), cols = static_cast<size_t>(info.shape[1]);
  const FloatSpan src{input.data(), info.dtype, rows * cols};
  for (const char* kind : {"e8m0", "f32"}) {
    SCOPED_TRACE(kind);
    const Fp8BlockShape shape{rows, cols, std::string(kind) == "e8m0" ? Fp8ScaleKind::E8M0 : Fp8ScaleKind::F32};
    const std::vector<uint8_t> want_weight = f.bytes(std::string("fp8.") + kind + ".weight");
    const std::vector<uint8_t> want_scale = f.bytes(std::string("fp8.") + kind + ".scale");
    for (Isa isa : all_isas()) {
      SCOPED_TRACE(isa_name(isa));
      std::vector<uint8_t> weight(rows * cols, 0xAA), scale(want_scale.size(), 0xAA);
      fp8_block_kernels(isa).quantize(src, shape, weight.data(), scale.data());
      EXPECT_TRUE(BytesEqual(scale, want_scale)) << "scales";
      EXPECT_TRUE(BytesEqual(weight, want_weight)) << "E4M3 codes";
    }
  }
}

TEST_F(QuantizerOracle, Mxfp4EqualsModelOptsQuantizer) {
  const OracleFile& f = *file_;
  const io::TensorInfo& info = f.info("mxfp4.input");
  const std::vector<uint8_t> input = f.bytes("mxfp4.input");
  const size_t n = static_cast<size_t>(info.numel());
  const FloatSpan src{input.data(), info.dtype, n};
  const std::vector<uint8_t> want_packed = f.bytes("mxfp4.weight"), want_scale = f.bytes("mxfp4.scale");
  ASSERT_EQ(want_packed.size(), n / 2);
  ASSERT_EQ(want_scale.size(), n / kMxfp4BlockSize);
  for (Isa isa : all_isas()) {
    SCOPED_TRACE(isa_name(isa));
    std::vector<uint8_t> packed(n / 2, 0xAA), scale(n / kMxfp4BlockSize, 0xAA);
    mxfp4_kernels(isa).quantize(src, packed.data(), scale.data());
    EXPECT_TRUE(BytesEqual(scale, want_scale)) << "E8M0 scales";
    EXPECT_TRUE(BytesEqual(packed, want_packed)) << "E2M1 codes";
  }
}

}  // namespace
}  // namespace fp4kit
