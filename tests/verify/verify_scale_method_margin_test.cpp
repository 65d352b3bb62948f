// verify's SQNR margin follows the method the convert plan records for a weight: a weight whose
// block scales were chosen for the activation-weighted error ("hessian") may be a few dB below a
// fresh max-scaled quantization of its source, where a max-scaled one may not; codes that no longer
// encode the source fail either way.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/convert_plan.h"
#include "verify_test_util.h"

namespace fp4kit::testing {
namespace {

const std::string kWeight = "layers.1.ffn.experts.3.w2.weight";

// The weight's packed codes with the first `blocks` 16-value blocks changed (every magnitude code m
// of those blocks becomes 7 - m), the rest as in `original`.
void write_codes(const std::string& dir, const std::vector<char>& original, size_t blocks) {
  std::vector<char> codes = original;
  for (size_t i = 0; i < std::min(codes.size(), blocks * 8); ++i) codes[i] = static_cast<char>(codes[i] ^ 0x77);
  write_tensor_bytes(dir, kWeight, 0, codes.data(), codes.size());
}

std::vector<char> read_codes(const std::string& dir) {
  const io::SafetensorsFile f = io::SafetensorsFile::open(shard_holding(dir, kWeight));
  const std::vector<std::byte> bytes = f.read_all(f.at(kWeight));
  const auto* first = reinterpret_cast<const char*>(bytes.data());
  return std::vector<char>(first, first + bytes.size());
}

// How far (dB) the weight's SQNR is below the fresh quantization's, and whether verify failed it.
struct Verdict {
  double drop = 0;
  bool low_sqnr = false;
};

Verdict verdict(const std::string& dir) {
  const verify::VerifyReport r = verify_dir(dir, true);
  Verdict v;
  for (const verify::TensorNumerics& n : r.numerics)
    if (n.name == kWeight) {
      EXPECT_TRUE(n.sqnr_db.has_value() && n.expected_sqnr_db.has_value()) << kWeight;
      if (n.sqnr_db && n.expected_sqnr_db) v.drop = *n.expected_sqnr_db - *n.sqnr_db;
    }
  v.low_sqnr = find_finding(r, "numerics.low_sqnr", kWeight) != nullptr;
  return v;
}

void record_method(const std::string& dir, const std::string& method) {
  std::ofstream(dir + "/" + std::string(kConvertPlanFileName)) << nlohmann::json{{"scale_methods", {{kWeight, method}}}}.dump();
}

TEST(VerifyScaleMethodMargin, HessianWeightsMayLoseAFewDecibelsMaxWeightsMayNot) {
  const std::string dir = copy_checkpoint(converted_tiny(modelopt_args()), "verify-scale-margin");
  const std::vector<char> original = read_codes(dir);
  const size_t all_blocks = original.size() / 8;
  ASSERT_GT(all_blocks, 16u);
  const Verdict good = verdict(dir);
  ASSERT_FALSE(good.low_sqnr);
  ASSERT_LT(good.drop, 1.0);

  // The fewest changed blocks that take the weight more than 1.5 dB below the fresh quantization.
  size_t lo = 0, hi = 1;
  for (; hi <= all_blocks; hi *= 2) {
    write_codes(dir, original, hi);
    if (verdict(dir).drop > 1.5) break;
    lo = hi;
  }
  ASSERT_LE(hi, all_blocks) << "changing every block never lost 1.5 dB";
  while (hi - lo > 1) {
    const size_t mid = (lo + hi) / 2;
    write_codes(dir, original, mid);
    (verdict(dir).drop > 1.5 ? hi : lo) = mid;
  }
  write_codes(dir, original, hi);
  const Verdict some = verdict(dir);
  std::printf("%zu of %zu blocks changed: %.2f dB below the fresh quantization\n", hi, all_blocks, some.drop);
  ASSERT_TRUE(some.drop > 1.5 && some.drop < 5.0) << some.drop;  // one block's worth above 1.5 dB

  // Unrecorded, or recorded as max: more than the 1 dB margin fails.
  EXPECT_TRUE(some.low_sqnr);
  record_method(dir, "max");
  EXPECT_TRUE(verdict(dir).low_sqnr);
  // Recorded as hessian: within its 6 dB margin.
  record_method(dir, "hessian");
  EXPECT_FALSE(verdict(dir).low_sqnr);
  // Every code changed: no margin hides it.
  write_codes(dir, original, all_blocks);
  const Verdict all = verdict(dir);
  EXPECT_GT(all.drop, 6.0);
  EXPECT_TRUE(all.low_sqnr);
}

}  // namespace
}  // namespace fp4kit::testing
