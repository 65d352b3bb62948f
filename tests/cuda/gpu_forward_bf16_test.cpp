// The GPU forward pass in BF16 (the default precision on the GPU) held to what BF16 costs transformers
// itself. tests/data/dsv4-tiny/reference_bf16.safetensors holds transformers' DeepseekV4ForCausalLM
// cast to bfloat16 as a whole (scripts/reference/bf16_reference.py, run on an H200) on the input ids
// of reference.safetensors; its KL divergence from the float32 logits is the error budget. The
// engine's BF16 mode rounds only the linears' inputs to BF16 (weights in their stored formats, F32
// accumulation, F32 elsewhere), so it must land within that budget: mean KL and top-1 agreement at
// least as good as transformers' BF16 run, on the official layout and on NVFP4 conversions (there
// against the CPU engine's F32 logits of the same checkpoint).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "engine/engine.h"
#include "gpu_engine/gpu_forward.h"
#include "gpu_test.h"
#include "logit_divergence.h"
#include "io/safetensors_file.h"
#include "run_command.h"
#include "test_data.h"
#include "tiny_conversions.h"

namespace fp4kit {
namespace {

using testing::Divergence;
using testing::divergence;

std::vector<float> read_f32(const io::SafetensorsFile& f, const std::string& name, DType want) {
  const io::TensorInfo& info = f.at(name);
  EXPECT_EQ(info.dtype, want) << name;
  const std::vector<std::byte> bytes = f.read_all(info);
  std::vector<float> out;
  if (want == DType::F32) {
    out.resize(bytes.size() / 4);
    std::memcpy(out.data(), bytes.data(), bytes.size());
  } else {  // BF16: the upper half of an F32
    out.resize(bytes.size() / 2);
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, &bytes[2 * i], 2);
      const uint32_t bits = static_cast<uint32_t>(h) << 16;
      std::memcpy(&out[i], &bits, 4);
    }
  }
  return out;
}

struct Budget {
  std::vector<int64_t> ids;
  int64_t batch = 0;
  std::vector<float> f32_logits;
  Divergence transformers_bf16;
};

const Budget& budget() {
  static const Budget cached = [] {
    Budget b;
    const auto ref = io::SafetensorsFile::open(testing::test_data("dsv4-tiny/reference.safetensors"));
    const auto bf16 = io::SafetensorsFile::open(testing::test_data("dsv4-tiny/reference_bf16.safetensors"));
    const io::TensorInfo& ids = ref.at("input_ids");
    const std::vector<std::byte> id_bytes = ref.read_all(ids);
    b.ids.resize(id_bytes.size() / 8);
    std::memcpy(b.ids.data(), id_bytes.data(), id_bytes.size());
    b.batch = ids.shape[0];
    b.f32_logits = read_f32(ref, "logits", DType::F32);
    const std::vector<float> hf_bf16 = read_f32(bf16, "logits", DType::BF16);
    b.transformers_bf16 = divergence(b.f32_logits, hf_bf16, ref.at("logits").shape[2]);
    return b;
  }();
  return cached;
}

gpu_engine::GpuForwardOptions with(gpu_engine::Precision p) {
  gpu_engine::GpuForwardOptions o;
  o.precision = p;
  return o;
}

void expect_within_budget(const Divergence& ours, const Divergence& limit, const char* what) {
  std::printf("%s: mean KL %.3g (max %.3g), top-1 %lld/%lld; transformers BF16: mean KL %.3g (max %.3g), top-1 %lld/%lld\n",
              what, ours.kld_mean, ours.kld_max, static_cast<long long>(ours.top1_same),
              static_cast<long long>(ours.positions), limit.kld_mean, limit.kld_max,
              static_cast<long long>(limit.top1_same), static_cast<long long>(limit.positions));
  EXPECT_TRUE(std::isfinite(ours.kld_mean) && std::isfinite(ours.kld_max)) << what;
  EXPECT_LE(ours.kld_mean, limit.kld_mean) << what;
  EXPECT_GE(ours.top1_same * limit.positions, limit.top1_same * ours.positions) << what;
}

TEST(CudaGpuForwardBf16, WithinTransformersOwnBf16ErrorOnTheReference) {
  FP4KIT_REQUIRE_GPU();
  const Budget& b = budget();
  ASSERT_GT(b.transformers_bf16.kld_mean, 0.0);  // the budget is real: BF16 changes the logits
  gpu_engine::GpuForward bf16(testing::test_data("dsv4-tiny"), with(gpu_engine::Precision::Bf16));
  const std::vector<float> got = bf16.forward(b.ids, b.batch);
  ASSERT_EQ(got.size(), b.f32_logits.size());
  const Divergence ours = divergence(b.f32_logits, got, 1024);
  expect_within_budget(ours, b.transformers_bf16, "GPU BF16 vs transformers F32");
  // And the mode is what it says: the F32 mode on the same ids is another (much closer) result.
  gpu_engine::GpuForward f32(testing::test_data("dsv4-tiny"), with(gpu_engine::Precision::F32));
  const Divergence f32_mode = divergence(b.f32_logits, f32.forward(b.ids, b.batch), 1024);
  EXPECT_LT(f32_mode.kld_mean * 10, ours.kld_mean) << "BF16 mode no further from F32 than the F32 mode";
}

// Every product through cuBLASLt on weights decoded to BF16 (what batches of at least
// kDecodeOnceRows rows, or kDecodeOnceExpertRows rows per expert, take): the same budget.
TEST(CudaGpuForwardBf16, WeightsDecodedOnceStayWithinTheBudget) {
  FP4KIT_REQUIRE_GPU();
  const Budget& b = budget();
  gpu_engine::GpuForwardOptions o = with(gpu_engine::Precision::Bf16);
  o.decode_once_rows = 1, o.decode_once_expert_rows = 1;
  gpu_engine::GpuForward gpu(testing::test_data("dsv4-tiny"), o);
  expect_within_budget(divergence(b.f32_logits, gpu.forward(b.ids, b.batch), 1024), b.transformers_bf16,
                       "decoded weights, cuBLASLt");
}

// Conversions the BF16 mode reads through the NVFP4 weight GEMMs (experts cast losslessly; every
// linear requantized; the compressed-tensors layout), against the CPU engine's F32 logits of the
// same checkpoint, and one-token sequences (the GEMMs' decode path).
TEST(CudaGpuForwardBf16, WithinTheBudgetOnNvfp4ConversionsAndShortSequences) {
  FP4KIT_REQUIRE_GPU();
  const Budget& b = budget();
  for (const auto& [flags, out] : testing::tiny_nvfp4_conversions("gpu-forward-bf16")) {
    engine::Engine cpu(out);
    gpu_engine::GpuForward gpu(out, with(gpu_engine::Precision::Bf16));
    expect_within_budget(divergence(cpu.forward(b.ids, b.batch), gpu.forward(b.ids, b.batch), 1024),
                         b.transformers_bf16, ("convert" + flags).c_str());
  }
  engine::Engine cpu(testing::test_data("dsv4-tiny"));
  gpu_engine::GpuForward gpu(testing::test_data("dsv4-tiny"), with(gpu_engine::Precision::Bf16));
  const std::vector<int64_t> one(b.ids.begin(), b.ids.begin() + 3);  // three sequences of one token
  const Divergence d = divergence(cpu.forward(one, 3), gpu.forward(one, 3), 1024);
  std::printf("one-token sequences: mean KL %.3g, top-1 %lld/3\n", d.kld_mean, static_cast<long long>(d.top1_same));
  EXPECT_LE(d.kld_mean, b.transformers_bf16.kld_mean);
  EXPECT_EQ(d.top1_same, 3);
}

}  // namespace
}  // namespace fp4kit
