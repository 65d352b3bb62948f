// Max calibration's statistic: max |x| per module, NaN sticking, and its file round trip.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "base/error.h"
#include "calib/amax_table.h"
#include "convert/calibration.h"
#include "io/safetensors_writer.h"
#include "test_data.h"

namespace fp4kit {
namespace {

TEST(AmaxTable, MaxAbsOverEveryObservation) {
  AmaxTable t;
  const float a[] = {-0.0f, 1.5f, -3.25f, 2.0f};
  const float b[] = {0.5f, -1.0f};
  t.observe("m", a, 4);
  t.observe("m", b, 2);
  EXPECT_EQ(t.at("m"), 3.25f);
  t.merge("m", 7.0f);
  EXPECT_EQ(t.at("m"), 7.0f);
  const float z[] = {-0.0f, 0.0f};
  t.observe("zero", z, 2);
  EXPECT_EQ(t.at("zero"), 0.0f);
  EXPECT_FALSE(std::signbit(t.at("zero")));
  EXPECT_EQ(t.first_non_finite(), "");
  EXPECT_THROW(t.at("absent"), Error);
}

TEST(AmaxTable, NonFiniteInputMakesTheValueNaNForGood) {
  AmaxTable t;
  const float bad[] = {1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f};
  t.observe("layers.1.attn.wq_a", bad, 3);
  const float good[] = {100.0f};
  t.observe("layers.1.attn.wq_a", good, 1);
  EXPECT_TRUE(std::isnan(t.at("layers.1.attn.wq_a")));
  const float inf[] = {std::numeric_limits<float>::infinity()};
  t.observe("layers.0.attn.wkv", inf, 1);
  EXPECT_EQ(t.first_non_finite(), "layers.0.attn.wkv");
}

TEST(AmaxTable, FileRoundTripIsTheFormatConvertReads) {
  AmaxTable t;
  t.merge("layers.0.ffn.experts.1.w1", 4.5f);
  t.merge("layers.0.ffn.experts.1.w3", 4.5f);
  t.merge("layers.0.ffn.experts.0.w2", 99.99546f);
  const std::string path = testing::fresh_temp_dir("amax") + "/amax.safetensors";
  t.save(path, {{"samples", "4"}});
  const AmaxTable back = AmaxTable::load(path);
  EXPECT_EQ(back.values(), t.values());
  const Calibration c = load_calibration(path);
  EXPECT_EQ(c.input_amax.at("layers.0.ffn.experts.0.w2"), 99.99546f);
}

TEST(AmaxTable, LoadRefusesOtherTensorsNamingThem) {
  const std::string path = testing::fresh_temp_dir("amax-bad") + "/bad.safetensors";
  io::SafetensorsWriter w(path);
  w.declare("layers.0.attn.wq_a.input_amax", DType::F32, {1, 1});
  w.begin();
  const float v = 1;
  w.write("layers.0.attn.wq_a.input_amax", std::as_bytes(std::span(&v, 1)));
  w.commit();
  try {
    AmaxTable::load(path);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("layers.0.attn.wq_a.input_amax"), std::string::npos) << e.what();
  }
}

TEST(AmaxTable, OracleFileLoads) {
  const AmaxTable t = AmaxTable::load(testing::test_data("oracles/dsv4-tiny-modelopt/calib_amax.safetensors"));
  EXPECT_GT(t.size(), 0u);
  EXPECT_EQ(t.first_non_finite(), "");
}

}  // namespace
}  // namespace fp4kit
