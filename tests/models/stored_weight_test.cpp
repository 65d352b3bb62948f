// Reading any stored weight as f32: the official dequant of the tiny V4 checkpoint (FP8 blocks incl.
// a ragged one, MXFP4 experts, BF16/F32 plain), the NVFP4 output of ModelOpt's exporter, row ranges.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "base/error.h"
#include "formats/bf16.h"
#include "io/checkpoint_index.h"
#include "io/safetensors_file.h"
#include "models/stored_weight.h"
#include "test_data.h"

namespace fp4kit {
namespace {

std::vector<float> golden_bf16(const io::SafetensorsFile& f, const io::TensorInfo& t) {
  const auto bytes = f.read_all(t);
  std::vector<float> out(bytes.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t b;
    std::memcpy(&b, bytes.data() + 2 * i, 2);
    out[i] = BF16{b}.to_float();
  }
  return out;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0 || (a == 0 && b == 0); }

TEST(StoredWeights, OfficialDequantOfEveryGoldenWeight) {
  const auto ckpt = io::Checkpoint::open(testing::test_data("dsv4-tiny"));
  const StoredWeights weights(ckpt);
  const auto golden = io::SafetensorsFile::open(testing::test_data("dsv4-tiny/dequant_bf16.safetensors"));
  size_t fp8 = 0, mx = 0;
  for (const io::TensorInfo& t : golden.tensors()) {
    ASSERT_TRUE(weights.has(t.name)) << t.name;
    EXPECT_EQ(weights.shape(t.name), t.shape) << t.name;
    const Storage s = weights.storage(t.name);
    fp8 += s == Storage::Fp8BlockE8M0;
    mx += s == Storage::Mxfp4;
    const auto want = golden_bf16(golden, t);
    const auto got = weights.read_f32(t.name);
    ASSERT_EQ(got.size(), want.size()) << t.name;
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) bad += !same_bits(got[i], want[i]);
    EXPECT_EQ(bad, 0u) << t.name;
  }
  EXPECT_EQ(fp8, 44u);
  EXPECT_EQ(mx, 30u);
}

TEST(StoredWeights, RowRangesEqualTheSameRowsOfTheWholeTensor) {
  const auto ckpt = io::Checkpoint::open(testing::test_data("dsv4-tiny"));
  const StoredWeights weights(ckpt);
  for (const char* name : {"layers.1.attn.wkv.weight", "layers.2.ffn.experts.3.w2.weight", "embed.weight",
                           "layers.0.attn.attn_sink"}) {
    const auto whole = weights.read_f32(name);
    const size_t rows = static_cast<size_t>(weights.shape(name)[0]);
    const size_t cols = whole.size() / rows;
    for (size_t r0 : {size_t{0}, size_t{1}, rows / 2, rows - 1}) {
      const size_t r1 = std::min(rows, r0 + 67);
      const auto part = weights.read_f32(name, r0, r1);
      ASSERT_EQ(part.size(), (r1 - r0) * cols) << name;
      EXPECT_EQ(0, std::memcmp(part.data(), whole.data() + r0 * cols, part.size() * 4)) << name << " rows " << r0;
    }
  }
}

TEST(StoredWeights, IntegerTensorsAndErrorsNamingTheTensor) {
  const auto ckpt = io::Checkpoint::open(testing::test_data("dsv4-tiny"));
  const StoredWeights weights(ckpt);
  const auto tid2eid = weights.read_i64("layers.0.ffn.gate.tid2eid");
  ASSERT_EQ(tid2eid.size(), 1024u * 2);
  for (int64_t e : tid2eid) EXPECT_TRUE(e >= 0 && e < 8);
  try {
    weights.read_f32("layers.9.attn.wq_a.weight");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("layers.9.attn.wq_a.weight"), std::string::npos) << e.what();
  }
  EXPECT_THROW(weights.read_f32("layers.0.ffn.gate.tid2eid"), InputError);
  EXPECT_THROW(weights.read_i64("embed.weight"), InputError);
}

// ModelOpt's lossless cast: the NVFP4 expert read back equals the MXFP4 source value wherever the
// exporter's block was in E4M3's window; elsewhere it is the clamped (nearest representable) value.
TEST(StoredWeights, Nvfp4ExpertsOfTheExporterReadBackAsTheirSource) {
  const auto src_ckpt = io::Checkpoint::open(testing::test_data("dsv4-tiny"));
  const auto out_ckpt = io::Checkpoint::open(testing::test_data("oracles/dsv4-tiny-modelopt/cast"));
  const StoredWeights src(src_ckpt), out(out_ckpt);
  const std::string name = "layers.2.ffn.experts.5.w1.weight";
  ASSERT_EQ(out.storage(name), Storage::Nvfp4);
  ASSERT_EQ(src.storage(name), Storage::Mxfp4);
  const auto a = src.read_f32(name), b = out.read_f32(name);
  ASSERT_EQ(a.size(), b.size());
  size_t exact = 0;
  double err = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    exact += same_bits(a[i], b[i]);
    err += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    ref += double(a[i]) * a[i];
  }
  EXPECT_GT(exact, a.size() * 3 / 4);
  EXPECT_LT(std::sqrt(err / ref), 0.05);
}

}  // namespace
}  // namespace fp4kit
