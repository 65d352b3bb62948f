// `calibrate --hessian`: the XᵀX blocks it writes are those of the rows the forward pass feeds each
// linear (summed here independently), its amax file is the same with or without them, a killed run
// resumes to the same file, and a resume or an existing file that disagree are refused (the GPU's
// statistics: tests/cuda/gpu_calibrate_xtx_test.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>

#include "base/error.h"
#include "calib/amax_table.h"
#include "calib/calib_test_util.h"
#include "calib/calibrate.h"
#include "calib/xtx_table.h"
#include "engine/engine.h"
#include "io/safetensors_file.h"
#include "run_command.h"
#include "test_data.h"

namespace fp4kit {
namespace {

using testing::run_fp4kit;

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Σ_rows w²·x_a·x_b for every block, in long double, row by row as the rows arrive.
struct NaiveXtx {
  int64_t cols = 0, rows = 0;
  std::vector<long double> sums;
  void add(const float* x, int64_t n, int64_t k, const float* weights) {
    if (sums.empty()) cols = k, sums.assign(static_cast<size_t>(k / 16 * 256), 0.0L);
    rows += n;
    for (int64_t r = 0; r < n; ++r) {
      const long double w = weights ? weights[r] : 1.0L;
      for (int64_t j = 0; j < k / 16; ++j)
        for (int a = 0; a < 16; ++a)
          for (int b = 0; b < 16; ++b)
            sums[static_cast<size_t>(j * 256 + a * 16 + b)] +=
                w * x[r * k + j * 16 + a] * w * x[r * k + j * 16 + b];
    }
  }
};

// F32 values of the file against the long double sums: each within 1e-6 of the block's diagonal scale.
void expect_blocks_match(const XtxBlocks& got, const NaiveXtx& want, const std::string& module) {
  ASSERT_EQ(got.cols, want.cols) << module;
  EXPECT_EQ(got.rows, want.rows) << module;
  ASSERT_EQ(got.sums.size(), want.sums.size()) << module;
  for (size_t j = 0; j < got.sums.size() / 256; ++j)
    for (int a = 0; a < 16; ++a)
      for (int b = 0; b < 16; ++b) {
        const size_t i = j * 256 + static_cast<size_t>(a * 16 + b);
        const long double scale = std::sqrt(want.sums[j * 256 + static_cast<size_t>(a * 17)] *
                                             want.sums[j * 256 + static_cast<size_t>(b * 17)]);
        const double diff = std::fabs(static_cast<double>(got.sums[i] - want.sums[i]));
        ASSERT_TRUE(diff <= 1e-6 * static_cast<double>(scale) + 1e-30)
            << module << " block " << j << " [" << a << "," << b << "]: " << got.sums[i] << " vs "
            << static_cast<double>(want.sums[i]);
      }
}

TEST(XtxTable, SumsOfRowsAndWeightsAcrossCallsAndThreads) {
  std::mt19937 rng(3);
  std::normal_distribution<float> n;
  const int64_t cols = 48;
  std::vector<float> x(static_cast<size_t>(37 * cols)), w(37);
  for (float& v : x) v = n(rng) * 3.0f;
  for (float& v : w) v = std::fabs(n(rng));
  NaiveXtx plain, weighted;
  plain.add(x.data(), 37, cols, nullptr);
  weighted.add(x.data(), 37, cols, w.data());
  const std::string dir = testing::fresh_temp_dir("xtx-table");
  for (unsigned threads : {1u, 3u}) {
    XtxTable t;
    t.observe("a", x.data(), 20, cols, nullptr, threads);
    t.observe("a", x.data() + 20 * cols, 17, cols, nullptr, threads);
    t.observe("b", x.data(), 37, cols, w.data(), threads);
    const std::string path = dir + "/t" + std::to_string(threads) + ".safetensors";
    t.save(path, {{"format", std::string(kXtxFormat)}});
    const XtxTable back = XtxTable::load(path);
    ASSERT_EQ(back.size(), 2u);
    expect_blocks_match(back.modules().at("a"), plain, "a");
    expect_blocks_match(back.modules().at("b"), weighted, "b");
  }
  XtxTable t;
  EXPECT_THROW(t.observe("c", x.data(), 1, 40, nullptr, 1), Error);
}

TEST(XtxTable, LoadRefusesOtherTensors) {
  const std::string dir = testing::fresh_temp_dir("xtx-bad");
  AmaxTable amax;
  amax.merge("layers.0.attn.wq_a", 1.0f);
  amax.save(dir + "/amax.safetensors");
  try {
    XtxTable::load(dir + "/amax.safetensors");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("layers.0.attn.wq_a.input_amax"), std::string::npos) << e.what();
  }
}

class RecordingObserver : public engine::LinearObserver {
 public:
  explicit RecordingObserver(std::set<std::string> modules) : modules_(std::move(modules)) {}
  void on_linear_input(const engine::LinearInput& in) override {
    const std::string name(in.name);
    if (modules_.count(name)) sums[name].add(in.x, in.rows, in.cols, nullptr);
  }
  std::map<std::string, NaiveXtx> sums;

 private:
  std::set<std::string> modules_;
};

TEST(CalibrateXtx, BlocksAreThoseOfTheForwardPassRows) {
  const CalibrationBatch b = testing::load_calibration_ids(testing::test_data("calib/oracle/calib_ids.safetensors"));
  const std::string dir = testing::fresh_temp_dir("calib-xtx");
  CalibrateOptions o;
  o.hessian_path = dir + "/xtx.safetensors";
  const CalibrateReport r = calibrate(testing::test_data("dsv4-tiny"), b, dir + "/amax.safetensors", o);
  calibrate(testing::test_data("dsv4-tiny"), b, dir + "/plain.safetensors", {});
  // The amax file does not change with the statistics beside it.
  EXPECT_EQ(bytes_of(dir + "/amax.safetensors"), bytes_of(dir + "/plain.safetensors"));

  const XtxTable table = XtxTable::load(o.hessian_path);
  EXPECT_EQ(r.xtx_entries, table.size());
  EXPECT_EQ(table.size(), AmaxTable::load(dir + "/amax.safetensors").size());  // the same modules
  const std::set<std::string> checked = {"layers.0.attn.wq_a", "layers.1.attn.wo_b", "layers.2.ffn.shared_experts.w2",
                                         "layers.3.ffn.experts.5.w1", "layers.3.ffn.experts.5.w2"};
  RecordingObserver rec(checked);
  engine::EngineOptions eo;
  eo.observer = &rec;
  engine::Engine(testing::test_data("dsv4-tiny"), eo).forward(b.ids, b.batch);
  for (const std::string& m : checked) {
    ASSERT_TRUE(rec.sums.count(m)) << m;
    ASSERT_TRUE(table.modules().count(m)) << m;
    expect_blocks_match(table.modules().at(m), rec.sums.at(m), m);
  }
  const io::SafetensorsFile f = io::SafetensorsFile::open(o.hessian_path);
  const io::SafetensorsFile amax = io::SafetensorsFile::open(dir + "/amax.safetensors");
  EXPECT_EQ(f.header().metadata.at("fingerprint"), amax.header().metadata.at("fingerprint"));
  EXPECT_EQ(f.header().metadata.at("format"), kXtxFormat);
  EXPECT_FALSE(f.header().metadata.at("model").empty());
}

std::string calibrate_args(const std::string& dir, const std::string& name) {
  return "calibrate " + testing::test_data("dsv4-tiny") + " --data " +
         testing::test_data("calib/oracle/calib_ids.safetensors") + " --threads 2 --quiet --out " + dir + "/" + name +
         ".safetensors";
}

TEST(CalibrateXtxCli, KillAfterALayerThenResumeGivesTheSameFiles) {
  const std::string dir = testing::fresh_temp_dir("calib-xtx-cli");
  const auto whole = run_fp4kit(calibrate_args(dir, "whole") + " --hessian " + dir + "/whole-xtx.safetensors");
  ASSERT_EQ(whole.exit_code, 0) << whole.output;

  ::setenv("FP4KIT_TEST_CRASH_AFTER_LAYERS", "2", 1);
  const auto killed = run_fp4kit(calibrate_args(dir, "k") + " --hessian " + dir + "/k-xtx.safetensors");
  ::unsetenv("FP4KIT_TEST_CRASH_AFTER_LAYERS");
  EXPECT_EQ(killed.exit_code, 137) << killed.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/k-xtx.safetensors"));

  const auto without = run_fp4kit(calibrate_args(dir, "k") + " --resume");
  EXPECT_EQ(without.exit_code, 2) << without.output;
  EXPECT_NE(without.output.find("started with --hessian"), std::string::npos) << without.output;

  const auto resumed = run_fp4kit(calibrate_args(dir, "k") + " --resume --hessian " + dir + "/k-xtx.safetensors");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(bytes_of(dir + "/k-xtx.safetensors"), bytes_of(dir + "/whole-xtx.safetensors"));
  EXPECT_EQ(bytes_of(dir + "/k.safetensors"), bytes_of(dir + "/whole.safetensors"));

  // A run killed without the statistics cannot be resumed into one with them.
  ::setenv("FP4KIT_TEST_CRASH_AFTER_LAYERS", "1", 1);
  EXPECT_EQ(run_fp4kit(calibrate_args(dir, "p")).exit_code, 137);
  ::unsetenv("FP4KIT_TEST_CRASH_AFTER_LAYERS");
  const auto with = run_fp4kit(calibrate_args(dir, "p") + " --resume --hessian " + dir + "/p-xtx.safetensors");
  EXPECT_EQ(with.exit_code, 2) << with.output;
  EXPECT_NE(with.output.find("started without --hessian"), std::string::npos) << with.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/p-xtx.safetensors"));
}

TEST(CalibrateXtxCli, RefusesAnExistingFileAndTheOutputItself) {
  const std::string dir = testing::fresh_temp_dir("calib-xtx-bad");
  { std::ofstream(dir + "/e-xtx.safetensors") << "x"; }
  const auto exists = run_fp4kit(calibrate_args(dir, "e") + " --hessian " + dir + "/e-xtx.safetensors");
  EXPECT_EQ(exists.exit_code, 2) << exists.output;
  EXPECT_NE(exists.output.find("e-xtx.safetensors: exists"), std::string::npos) << exists.output;
  EXPECT_EQ(bytes_of(dir + "/e-xtx.safetensors"), "x");
  EXPECT_FALSE(std::filesystem::exists(dir + "/e.safetensors"));

  const auto same = run_fp4kit(calibrate_args(dir, "s") + " --hessian " + dir + "/s.safetensors");
  EXPECT_EQ(same.exit_code, 2) << same.output;
  EXPECT_NE(same.output.find("the same file as --out"), std::string::npos) << same.output;
}

}  // namespace
}  // namespace fp4kit
