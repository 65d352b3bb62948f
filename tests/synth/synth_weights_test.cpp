// Synthetic weights: exact official encodings of their own values, and a trained model's statistics.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "formats/bf16.h"
#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "models/deepseek_v4.h"
#include "synth/linear_weight.h"
#include "synth/synth.h"
#include "synth/weight_generator.h"

namespace fp4kit::synth {
namespace {

const TensorSpec& spec_named(const std::vector<TensorSpec>& specs, const std::string& name) {
  for (const auto& s : specs)
    if (s.name == name) return s;
  throw std::runtime_error("no tensor " + name);
}

struct Stats {
  double mean = 0, std = 0, kurtosis = 0;
  bool finite = true;
};

Stats stats(const std::vector<float>& v) {
  Stats s;
  for (float x : v) {
    s.finite = s.finite && std::isfinite(x);
    s.mean += x;
  }
  s.mean /= static_cast<double>(v.size());
  double m2 = 0, m4 = 0;
  for (float x : v) {
    const double d = x - s.mean;
    m2 += d * d;
    m4 += d * d * d * d;
  }
  m2 /= static_cast<double>(v.size());
  m4 /= static_cast<double>(v.size());
  s.std = std::sqrt(m2);
  s.kurtosis = m4 / (m2 * m2);
  return s;
}

std::vector<uint8_t> as_u8(const std::vector<std::byte>& b) {
  std::vector<uint8_t> out(b.size());
  std::memcpy(out.data(), b.data(), b.size());
  return out;
}

// The linear-weight checks on a dequantized [rows, cols] matrix and the generator's column gains.
void check_linear_statistics(const std::vector<float>& w, size_t rows, size_t cols, const std::vector<float>& gains) {
  ASSERT_EQ(w.size(), rows * cols);
  const double target = 1.0 / std::sqrt(static_cast<double>(cols));
  const Stats all = stats(w);
  EXPECT_TRUE(all.finite);
  EXPECT_NEAR(all.mean, 0.0, 0.05 * target);
  EXPECT_GT(all.std, 0.5 * target);
  EXPECT_LT(all.std, 3.0 * target);  // outlier columns add up to ~1x the variance

  // Without the outlier columns: t4 times 2^U(-1,1) has std 1.16 and heavy tails.
  std::vector<float> bulk;
  std::vector<double> row_rms(rows);
  for (size_t r = 0; r < rows; ++r) {
    double sum = 0;
    size_t n = 0;
    for (size_t c = 0; c < cols; ++c) {
      if (gains[c] != 1.0f) continue;
      const float x = w[r * cols + c];
      bulk.push_back(x);
      sum += double{x} * x;
      ++n;
    }
    row_rms[r] = std::sqrt(sum / static_cast<double>(n));
  }
  const Stats b = stats(bulk);
  EXPECT_GT(b.std, 0.9 * target);
  EXPECT_LT(b.std, 1.5 * target);
  EXPECT_GT(b.kurtosis, 4.0) << "tails are not heavy";

  // Per-row scales 2^U(-1,1): the 90th percentile row is ~3x the 10th.
  std::sort(row_rms.begin(), row_rms.end());
  const double spread = row_rms[rows * 9 / 10] / row_rms[rows / 10];
  EXPECT_GT(spread, 2.0);
  EXPECT_LT(spread, 5.0);

  // Outlier input channels exist (at ~0.1%) and stand out.
  std::vector<double> col_rms(cols);
  for (size_t c = 0; c < cols; ++c) {
    double sum = 0;
    for (size_t r = 0; r < rows; ++r) sum += double{w[r * cols + c]} * w[r * cols + c];
    col_rms[c] = std::sqrt(sum / static_cast<double>(rows));
  }
  std::vector<double> sorted = col_rms;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[cols / 2];
  size_t outliers = 0;
  for (size_t c = 0; c < cols; ++c) {
    if (gains[c] == 1.0f) continue;
    ++outliers;
    EXPECT_GT(col_rms[c], 5.0 * median) << "outlier column " << c;
  }
  EXPECT_GE(outliers, 1u);
  EXPECT_LE(outliers, cols / 200);
}

class SynthWeights : public ::testing::Test {
 protected:
  DeepseekV4Config config = synth_config("v4-flash:layers=4");
  std::vector<TensorSpec> specs = deepseek_v4_tensors(config);
  WeightGenerator generator{config, 11, 2};
};

TEST_F(SynthWeights, Fp8WeightIsTheReferenceQuantizationOfItsValues) {
  const TensorSpec& w = spec_named(specs, "layers.1.attn.wq_a.weight");  // [1024, 4096]
  const TensorSpec& s = spec_named(specs, "layers.1.attn.wq_a.scale");
  const QuantizedWeight q = generator.quantized(w, s);
  const size_t rows = 1024, cols = 4096;
  const LinearWeight linear(generator.tensor_rng(w.name), cols);
  std::vector<float> values(rows * cols);
  linear.rows(0, rows, values.data());
  std::vector<uint8_t> weight(rows * cols), scale(8 * 32);
  fp8_block_ref::quantize(FloatSpan{values.data(), DType::F32, values.size()}, Fp8BlockShape{rows, cols}, weight.data(),
                          scale.data());
  EXPECT_EQ(as_u8(q.weight), weight);
  EXPECT_EQ(as_u8(q.scale), scale);

  std::vector<float> dequant(rows * cols);
  fp8_block_ref::dequantize_f32(weight.data(), scale.data(), Fp8BlockShape{rows, cols}, 0, rows, dequant.data());
  check_linear_statistics(dequant, rows, cols, linear.column_gain());
  const std::set<uint8_t> scale_bytes(scale.begin(), scale.end());
  EXPECT_GE(scale_bytes.size(), 2u) << "every block has the same scale";
}

TEST_F(SynthWeights, RaggedFp8WeightIsTheReferenceQuantizationOfItsValues) {
  // tiny's wkv is [192, 128]: its second row of blocks has 64 rows.
  const DeepseekV4Config tiny = synth_config("tiny");
  const auto tiny_specs = deepseek_v4_tensors(tiny);
  const WeightGenerator g{tiny, 4, 3};
  const QuantizedWeight q =
      g.quantized(spec_named(tiny_specs, "layers.0.attn.wkv.weight"), spec_named(tiny_specs, "layers.0.attn.wkv.scale"));
  const size_t rows = 192, cols = 128;
  const LinearWeight linear(g.tensor_rng("layers.0.attn.wkv.weight"), cols);
  std::vector<float> values(rows * cols);
  linear.rows(0, rows, values.data());
  std::vector<uint8_t> weight(rows * cols), scale(2);
  fp8_block_ref::quantize(FloatSpan{values.data(), DType::F32, values.size()}, Fp8BlockShape{rows, cols}, weight.data(),
                          scale.data());
  EXPECT_EQ(as_u8(q.weight), weight);
  EXPECT_EQ(as_u8(q.scale), scale);
}

TEST_F(SynthWeights, Mxfp4ExpertIsTheReferenceQuantizationOfItsValues) {
  const TensorSpec& w = spec_named(specs, "layers.2.ffn.experts.17.w1.weight");  // I8 [2048, 2048]: [2048, 4096]
  const TensorSpec& s = spec_named(specs, "layers.2.ffn.experts.17.w1.scale");
  ASSERT_EQ(w.dtype, DType::I8);
  ASSERT_EQ(s.dtype, DType::F8_E8M0);
  const QuantizedWeight q = generator.quantized(w, s);
  const size_t rows = 2048, cols = 4096;
  const LinearWeight linear(generator.tensor_rng(w.name), cols);
  std::vector<float> values(rows * cols);
  linear.rows(0, rows, values.data());
  std::vector<uint8_t> packed(rows * cols / 2), scale(rows * cols / 32);
  mxfp4_ref::quantize(FloatSpan{values.data(), DType::F32, values.size()}, packed.data(), scale.data());
  EXPECT_EQ(as_u8(q.weight), packed);
  EXPECT_EQ(as_u8(q.scale), scale);

  std::vector<float> dequant(rows * cols);
  mxfp4_ref::dequantize_f32(packed.data(), scale.data(), rows * cols, dequant.data());
  check_linear_statistics(dequant, rows, cols, linear.column_gain());
  const std::set<uint8_t> scale_bytes(scale.begin(), scale.end());
  EXPECT_GE(scale_bytes.size(), 4u) << "MXFP4 group scales hardly vary";
}

TEST_F(SynthWeights, Fp8ExpertsAreTheOfficialRepackOfTheFp4Experts) {
  const DeepseekV4Config fp8_config = synth_config("v4-flash:layers=4", "fp8");
  const auto fp8_specs = deepseek_v4_tensors(fp8_config);
  const WeightGenerator fp8_generator{fp8_config, 11, 3};
  const std::string module = "layers.3.ffn.experts.200.w2";  // [4096, 2048]
  const QuantizedWeight fp4 =
      generator.quantized(spec_named(specs, module + ".weight"), spec_named(specs, module + ".scale"));
  const QuantizedWeight fp8 =
      fp8_generator.quantized(spec_named(fp8_specs, module + ".weight"), spec_named(fp8_specs, module + ".scale"));
  const size_t rows = 4096, cols = 2048;
  ASSERT_EQ(fp8.weight.size(), rows * cols);
  ASSERT_EQ(fp8.scale.size(), (rows / 128) * (cols / 128));
  std::vector<uint8_t> weight(rows * cols), scale((rows / 128) * (cols / 128));
  mxfp4_to_fp8_block(as_u8(fp4.weight).data(), as_u8(fp4.scale).data(), rows, cols, weight.data(), scale.data());
  EXPECT_EQ(as_u8(fp8.weight), weight);
  EXPECT_EQ(as_u8(fp8.scale), scale);
}

std::vector<float> plain_values(const WeightGenerator& g, const TensorSpec& s, int64_t rows) {
  const int64_t row_len = s.shape.size() > 1 ? s.shape[1] : 1;
  const size_t width = dtype_bits(s.dtype) / 8;
  std::vector<std::byte> bytes(static_cast<size_t>(rows * row_len) * width);
  g.plain_rows(s, 0, rows, bytes);
  std::vector<float> out(static_cast<size_t>(rows * row_len));
  for (size_t i = 0; i < out.size(); ++i) {
    if (s.dtype == DType::BF16) {
      uint16_t b;
      std::memcpy(&b, bytes.data() + 2 * i, 2);
      out[i] = BF16{b}.to_float();
    } else {
      std::memcpy(&out[i], bytes.data() + 4 * i, 4);
    }
  }
  return out;
}

TEST_F(SynthWeights, PlainTensorsFollowTheirRoles) {
  const Stats norm = stats(plain_values(generator, spec_named(specs, "layers.0.attn_norm.weight"), 4096));
  EXPECT_NEAR(norm.mean, 1.0, 0.01);
  EXPECT_NEAR(norm.std, 0.1, 0.01);

  const Stats embed = stats(plain_values(generator, spec_named(specs, "embed.weight"), 64));  // 64 of 129280 rows
  EXPECT_NEAR(embed.mean, 0.0, 0.001);
  EXPECT_NEAR(embed.std, 0.02, 0.001);
  EXPECT_TRUE(embed.finite);

  const Stats hc_fn = stats(plain_values(generator, spec_named(specs, "layers.0.hc_attn_fn"), 24));  // [24, 16384]
  EXPECT_NEAR(hc_fn.std, 0.7 / std::sqrt(4.0 * 4096), 0.0005);
  const Stats hc_base = stats(plain_values(generator, spec_named(specs, "layers.0.hc_attn_base"), 24));
  EXPECT_GT(hc_base.std, 0.2);
  EXPECT_LT(hc_base.std, 0.9);
  for (float x : plain_values(generator, spec_named(specs, "layers.0.hc_attn_scale"), 3)) {
    EXPECT_GE(x, 0.3f);
    EXPECT_LT(x, 1.5f);
  }
  const auto sink = plain_values(generator, spec_named(specs, "layers.0.attn.attn_sink"), 64);
  EXPECT_GT(stats(sink).std, 0.6);
  EXPECT_LT(stats(sink).std, 1.5);
  const Stats ape = stats(plain_values(generator, spec_named(specs, "layers.2.attn.compressor.ape"), 4));
  EXPECT_NEAR(ape.std, 0.5, 0.05);
  const Stats bias = stats(plain_values(generator, spec_named(specs, "layers.3.ffn.gate.bias"), 256));
  EXPECT_NEAR(bias.std, 0.1, 0.02);

  // BF16 projections are linear weights: std ~1/sqrt(in), not N(0, 0.02).
  const Stats router = stats(plain_values(generator, spec_named(specs, "layers.3.ffn.gate.weight"), 256));
  EXPECT_GT(router.std, 0.5 / 64);
  EXPECT_LT(router.std, 3.0 / 64);
  EXPECT_GT(router.kurtosis, 4.0);
}

TEST_F(SynthWeights, AnyRowsOfAPlainTensorComeOutTheSame) {
  for (const char* name : {"head.weight", "layers.2.attn.compressor.wkv.weight", "layers.0.hc_ffn_fn"}) {
    const TensorSpec& s = spec_named(specs, name);
    const size_t row_bytes = static_cast<size_t>(s.shape[1]) * dtype_bits(s.dtype) / 8;
    std::vector<std::byte> all(20 * row_bytes), part(7 * row_bytes);
    generator.plain_rows(s, 0, 20, all);
    generator.plain_rows(s, 9, 16, part);
    EXPECT_TRUE(std::equal(part.begin(), part.end(), all.begin() + 9 * static_cast<std::ptrdiff_t>(row_bytes))) << name;
  }
}

TEST_F(SynthWeights, HashTableRowsHoldDistinctExpertsInRange) {
  const TensorSpec& s = spec_named(specs, "layers.1.ffn.gate.tid2eid");  // I64 [129280, 6]
  ASSERT_EQ(s.dtype, DType::I64);
  const int64_t rows = 8192, k = 6, experts = 256;
  std::vector<std::byte> bytes(static_cast<size_t>(rows * k) * 8);
  generator.plain_rows(s, 1000, 1000 + rows, bytes);
  std::vector<int64_t> ids(static_cast<size_t>(rows * k));
  std::memcpy(ids.data(), bytes.data(), bytes.size());
  std::vector<size_t> count(experts);
  for (int64_t r = 0; r < rows; ++r) {
    std::set<int64_t> row;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = ids[static_cast<size_t>(r * k + j)];
      ASSERT_GE(e, 0);
      ASSERT_LT(e, experts);
      row.insert(e);
      ++count[static_cast<size_t>(e)];
    }
    ASSERT_EQ(row.size(), static_cast<size_t>(k)) << "row " << r;
  }
  // 49152 draws over 256 experts: 192 each on average, every expert used.
  for (size_t e = 0; e < count.size(); ++e) {
    EXPECT_GT(count[e], 120u) << "expert " << e;
    EXPECT_LT(count[e], 270u) << "expert " << e;
  }
  // Not sorted: the position within a row carries no information.
  size_t ascending = 0;
  for (int64_t r = 0; r < rows; ++r) ascending += ids[static_cast<size_t>(r * k)] < ids[static_cast<size_t>(r * k + 1)];
  EXPECT_NEAR(static_cast<double>(ascending) / rows, 0.5, 0.05);
}

}  // namespace
}  // namespace fp4kit::synth
