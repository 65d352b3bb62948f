// `calibrate --hessian DIR --hessian-mode full`: the matrices it writes are XᵀX of the rows the
// forward pass feeds each linear (per group for wo_a; summed here independently), its module list
// is the amax file's, a killed run resumes to the same files, and a resume in the other mode or an
// occupied directory are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "calib/amax_table.h"
#include "calib/calib_test_util.h"
#include "convert/dequant_test_util.h"
#include "calib/calibrate.h"
#include "calib/xtx_full_file.h"
#include "calib/xtx_full_observer.h"
#include "engine/engine.h"
#include "engine/model_config.h"
#include "io/safetensors_file.h"
#include "run_command.h"
#include "test_data.h"

namespace fp4kit {
namespace {

using testing::run_fp4kit;

// The whole input of each chosen module, as the forward pass feeds it.
class RecordingObserver : public engine::LinearObserver {
 public:
  explicit RecordingObserver(std::set<std::string> modules) : modules_(std::move(modules)) {}
  void on_linear_input(const engine::LinearInput& in) override {
    const std::string name(in.name);
    if (!modules_.count(name)) return;
    auto& [rows, cols, x] = inputs[name];
    rows += in.rows;
    cols = in.cols;
    x.insert(x.end(), in.x, in.x + in.rows * in.cols);
  }
  std::map<std::string, std::tuple<int64_t, int64_t, std::vector<float>>> inputs;

 private:
  std::set<std::string> modules_;
};

TEST(XtxFullSums, MatchLongDoubleSumsOnAnyThreadCount) {
  const int64_t rows = 150, stride = 40, first = 8, k = 32;
  std::vector<float> x(static_cast<size_t>(rows * stride)), w(static_cast<size_t>(rows));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * (1.0f + float(i % 7));
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.5f + 0.01f * static_cast<float>(i);
  const std::vector<double> one = xtx_full_sums(x.data(), rows, stride, first, k, w.data(), 1);
  EXPECT_TRUE(one == xtx_full_sums(x.data(), rows, stride, first, k, w.data(), 3));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) {
      long double s = 0;
      for (int64_t r = 0; r < rows; ++r)
        s += static_cast<long double>(w[r]) * x[r * stride + first + i] * w[r] * x[r * stride + first + j];
      const double got = one[static_cast<size_t>(i * k + j)];
      ASSERT_TRUE(std::fabs(got - static_cast<double>(s)) <= 1e-12 * (1.0 + std::fabs(static_cast<double>(s))))
          << i << "," << j << ": " << got << " vs " << static_cast<double>(s);
    }
}

TEST(CalibrateXtxFull, MatricesAreThoseOfTheForwardPassRows) {
  const CalibrationBatch b = testing::load_calibration_ids(testing::test_data("calib/oracle/calib_ids.safetensors"));
  const std::string dir = testing::fresh_temp_dir("calib-xtx-full");
  CalibrateOptions o;
  o.hessian_path = dir + "/xtx";
  o.hessian_full = true;
  const CalibrateReport r = calibrate(testing::test_data("dsv4-tiny"), b, dir + "/amax.safetensors", o);
  const XtxFullStatistics stats = XtxFullStatistics::open(o.hessian_path);
  const AmaxTable amax = AmaxTable::load(dir + "/amax.safetensors");
  EXPECT_EQ(r.xtx_entries, amax.size());
  for (const auto& [module, value] : amax.values()) EXPECT_TRUE(stats.has(module)) << module;
  EXPECT_EQ(stats.fingerprint(), io::SafetensorsFile::open(dir + "/amax.safetensors").header().metadata.at("fingerprint"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/amax.safetensors.fp4kit-calib"));

  const int64_t groups = engine::ModelConfig::load(testing::test_data("dsv4-tiny")).base.o_groups;
  const std::set<std::string> checked = {"layers.0.attn.wq_a", "layers.1.attn.wo_a", "layers.2.ffn.shared_experts.w2",
                                         "layers.3.ffn.experts.5.w1", "layers.3.ffn.experts.5.w2"};
  RecordingObserver rec(checked);
  engine::EngineOptions eo;
  eo.observer = &rec;
  engine::Engine(testing::test_data("dsv4-tiny"), eo).forward(b.ids, b.batch);
  for (const std::string& m : checked) {
    ASSERT_TRUE(rec.inputs.count(m)) << m;
    const auto& [rows, cols, x] = rec.inputs.at(m);
    const int64_t g = m.ends_with("wo_a") ? groups : 1, k = cols / g;
    int64_t got_groups = 0;
    const std::vector<double> h = stats.read(m, m + ".weight", 8 * g, k, got_groups);
    ASSERT_EQ(got_groups, g) << m;
    for (int64_t gi = 0; gi < g; ++gi)
      for (int64_t i = 0; i < k; i += 3)
        for (int64_t j = 0; j < k; j += 5) {
          long double s = 0, si = 0, sj = 0;
          for (int64_t r0 = 0; r0 < rows; ++r0) {
            const long double a = x[static_cast<size_t>(r0 * cols + gi * k + i)];
            const long double c = x[static_cast<size_t>(r0 * cols + gi * k + j)];
            s += a * c;
            si += a * a;
            sj += c * c;
          }
          const double got = h[static_cast<size_t>(gi * k * k + i * k + j)];
          ASSERT_TRUE(std::fabs(got - static_cast<double>(s)) <= 1e-6 * std::sqrt(static_cast<double>(si * sj)) + 1e-30)
              << m << " group " << gi << " [" << i << "," << j << "]: " << got << " vs " << static_cast<double>(s);
        }
  }
}

std::string calibrate_args(const std::string& dir, const std::string& name) {
  return "calibrate " + testing::test_data("dsv4-tiny") + " --data " +
         testing::test_data("calib/oracle/calib_ids.safetensors") + " --samples 2 --threads 2 --quiet --out " + dir +
         "/" + name + ".safetensors --hessian " + dir + "/" + name + "-xtx";
}

TEST(CalibrateXtxFullCli, KillAfterALayerThenResumeGivesTheSameFiles) {
  const std::string dir = testing::fresh_temp_dir("calib-xtx-full-cli");
  const auto whole = run_fp4kit(calibrate_args(dir, "whole") + " --hessian-mode full");
  ASSERT_EQ(whole.exit_code, 0) << whole.output;

  ::setenv("FP4KIT_TEST_CRASH_AFTER_LAYERS", "2", 1);
  const auto killed = run_fp4kit(calibrate_args(dir, "k") + " --hessian-mode full");
  ::unsetenv("FP4KIT_TEST_CRASH_AFTER_LAYERS");
  EXPECT_EQ(killed.exit_code, 137) << killed.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/k-xtx/" + std::string(kXtxFullIndex)));

  const auto blocks = run_fp4kit(calibrate_args(dir, "k") + " --resume");
  EXPECT_EQ(blocks.exit_code, 2) << blocks.output;
  EXPECT_NE(blocks.output.find("started with --hessian-mode full"), std::string::npos) << blocks.output;

  const auto resumed = run_fp4kit(calibrate_args(dir, "k") + " --hessian-mode full --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(testing::file_bytes(dir + "/k.safetensors"), testing::file_bytes(dir + "/whole.safetensors"));
  EXPECT_EQ(testing::file_bytes(dir + "/k-xtx/" + std::string(kXtxFullIndex)), testing::file_bytes(dir + "/whole-xtx/" + std::string(kXtxFullIndex)));
  size_t layers = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/whole-xtx")) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with("layer-")) continue;
    ++layers;
    EXPECT_EQ(testing::file_bytes(dir + "/k-xtx/" + name), testing::file_bytes(e.path().string())) << name;
  }
  EXPECT_EQ(layers, 4u);

  // An occupied directory is refused, and kept, without --force; --force replaces what a run wrote.
  std::filesystem::create_directories(dir + "/o-xtx");
  { std::ofstream(dir + "/o-xtx/notes.txt") << "x"; }
  const auto occupied = run_fp4kit(calibrate_args(dir, "o") + " --hessian-mode full");
  EXPECT_EQ(occupied.exit_code, 2) << occupied.output;
  EXPECT_NE(occupied.output.find("o-xtx: exists and is not empty"), std::string::npos) << occupied.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/o.safetensors"));
  const auto forced = run_fp4kit(calibrate_args(dir, "whole") + " --hessian-mode full --force");
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_EQ(testing::file_bytes(dir + "/k-xtx/" + xtx_full_layer_file(3)), testing::file_bytes(dir + "/whole-xtx/" + xtx_full_layer_file(3)));

  const auto mode = run_fp4kit(calibrate_args(dir, "m") + " --hessian-mode diagonal");
  EXPECT_EQ(mode.exit_code, 2) << mode.output;
  EXPECT_NE(mode.output.find("--hessian-mode diagonal: unknown"), std::string::npos) << mode.output;
}

}  // namespace
}  // namespace fp4kit
