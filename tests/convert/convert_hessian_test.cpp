// convert --scales hessian on the tiny V4 checkpoint with --recipe all-linear: statistics from
// calibrate --hessian on two sequences, the output verifies and its report names each tensor's
// method, the layer-output error on the two held-back sequences is lower than with max scaling on
// the attention linears, and bad statistics are refused before anything is written.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "calib/calib_test_util.h"
#include "calib/xtx_table.h"
#include "convert/layer_output_error.h"
#include "convert/tiny_all_linear_args.h"
#include "engine/engine.h"
#include "html_render.h"
#include "io/checkpoint_index.h"
#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"
#include "models/stored_weight.h"
#include "run_command.h"
#include "test_data.h"
#include "verify/verify_test_util.h"

namespace fp4kit {
namespace {

using testing::run_fp4kit;

// Statistics of the first two of the oracle's four sequences (once per test binary run).
struct Statistics {
  std::string dir, amax, xtx;
};
const Statistics& statistics() {
  static const Statistics s = [] {
    Statistics st;
    st.dir = testing::shared_temp_dir("convert-hessian-stats");
    st.amax = st.dir + "/amax.safetensors";
    st.xtx = st.dir + "/xtx.safetensors";
    const auto r = run_fp4kit("calibrate " + testing::test_data("dsv4-tiny") + " --data " +
                              testing::test_data("calib/oracle/calib_ids.safetensors") + " --samples 2 --quiet --out " +
                              st.amax + " --hessian " + st.xtx);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return st;
  }();
  return s;
}

std::string hessian_args(const std::string& out) {
  return testing::tiny_all_linear_args(out, "hessian") + " --hessian " + statistics().xtx + " --hessian-missing mse";
}

TEST(ConvertHessian, VerifiesAndTheReportNamesEachTensorsMethod) {
  const std::string dir = testing::fresh_temp_dir("convert-hessian");
  const auto c = run_fp4kit(hessian_args(dir + "/out") + " --json " + dir + "/c.json");
  ASSERT_EQ(c.exit_code, 0) << c.output;
  const nlohmann::json cj = testing::load_json(dir + "/c.json");
  EXPECT_TRUE(cj.at("hessian").at("blocks").get<uint64_t>() > 0);
  EXPECT_EQ(cj.at("hessian").at("fallback_blocks"), 0);

  const auto v = run_fp4kit("verify " + dir + "/out --source " + testing::test_data("dsv4-tiny") + " --json " + dir +
                            "/v.json --html " + dir + "/v.html");
  ASSERT_EQ(v.exit_code, 0) << v.output;
  const nlohmann::json vj = testing::load_json(dir + "/v.json");
  size_t hessian = 0;
  for (const nlohmann::json& t : vj.at("tensors_numerics")) {
    const std::string name = t.at("name"), method = t.at("scale_method");
    // Routed experts are MXFP4: cast; the MTP block has no statistics: mse; the rest: hessian.
    const std::string want = name.find(".ffn.experts.") != std::string::npos ? "cast"
                             : name.starts_with("mtp.")                       ? "mse"
                                                                               : "hessian";
    EXPECT_EQ(method, want) << name;
    hessian += method == "hessian";
  }
  EXPECT_EQ(hessian, 34u);
  EXPECT_EQ(vj.at("scale_methods").at("hessian"), 34);

  // Max scaling records "max" for what it requantizes.
  ASSERT_EQ(run_fp4kit(testing::tiny_all_linear_args(dir + "/max", "max")).exit_code, 0);
  const verify::VerifyReport m = testing::verify_dir(dir + "/max", false);
  for (const verify::TensorNumerics& n : m.numerics)
    EXPECT_EQ(n.scale_method, n.name.find(".ffn.experts.") != std::string::npos ? "cast" : "max") << n.name;

  const std::string chromium = testing::chromium_path();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed: the HTML report was not rendered";
  const std::string dom = testing::render(chromium, dir + "/v.html");
  size_t cells = 0, hessian_cells = 0;
  for (size_t at = dom.find("data-field=\"scale_method\""); at != std::string::npos;
       at = dom.find("data-field=\"scale_method\"", at + 1)) {
    ++cells;
    hessian_cells += dom.compare(dom.find('>', at) + 1, 8, "hessian<") == 0;
  }
  EXPECT_EQ(cells, std::min<size_t>(100, vj.at("tensors_numerics").size()));
  EXPECT_TRUE(hessian_cells >= 1u) << hessian_cells;
}

// Statistics whose every block is the identity give the mse sweep's bytes.
TEST(ConvertHessian, IdentityStatisticsGiveTheMseBytes) {
  const std::string dir = testing::fresh_temp_dir("convert-hessian-identity");
  const io::SafetensorsFile real = io::SafetensorsFile::open(statistics().xtx);
  io::SafetensorsWriter w(dir + "/identity.safetensors");
  w.set_metadata(real.header().metadata);
  for (const io::TensorInfo& t : real.tensors()) w.declare(t.name, t.dtype, t.shape);
  w.begin();
  for (const io::TensorInfo& t : w.layout()) {
    std::vector<std::byte> bytes(t.nbytes());
    if (t.dtype == DType::F32) {
      std::vector<float> v(static_cast<size_t>(t.numel()), 0.0f);
      for (size_t b = 0; b < v.size() / 256; ++b)
        for (size_t i = 0; i < 16; ++i) v[256 * b + 17 * i] = 1.0f;
      std::memcpy(bytes.data(), v.data(), bytes.size());
    }
    w.write(t.name, bytes);
  }
  w.commit();
  ASSERT_EQ(run_fp4kit(testing::tiny_all_linear_args(dir + "/h", "hessian") + " --hessian " + dir +
                       "/identity.safetensors --hessian-missing mse").exit_code, 0);
  ASSERT_EQ(run_fp4kit(testing::tiny_all_linear_args(dir + "/m", "mse")).exit_code, 0);
  const auto h = io::Checkpoint::open(dir + "/h"), m = io::Checkpoint::open(dir + "/m");
  size_t compared = 0;
  for (const std::string& shard : m.shard_files()) {
    const io::SafetensorsFile& a = h.shard(shard);
    const io::SafetensorsFile& b = m.shard(shard);
    for (const io::TensorInfo& t : b.tensors()) {
      ASSERT_NE(a.find(t.name), nullptr) << t.name;
      EXPECT_TRUE(a.read_all(*a.find(t.name)) == b.read_all(t)) << t.name;
      ++compared;
    }
  }
  EXPECT_TRUE(compared > 100u) << compared;
}

TEST(ConvertHessian, LowerLayerOutputErrorThanMaxOnHeldBackActivations) {
  const std::string dir = testing::fresh_temp_dir("convert-hessian-error");
  ASSERT_EQ(run_fp4kit(hessian_args(dir + "/hessian")).exit_code, 0);
  ASSERT_EQ(run_fp4kit(testing::tiny_all_linear_args(dir + "/max", "max")).exit_code, 0);
  ASSERT_EQ(run_fp4kit(testing::tiny_all_linear_args(dir + "/mse", "mse")).exit_code, 0);
  // The held-back sequences: the oracle's last two, which calibration did not see.
  const CalibrationBatch all = testing::load_calibration_ids(testing::test_data("calib/oracle/calib_ids.safetensors"));
  const std::vector<int64_t> held(all.ids.begin() + 2 * all.seq, all.ids.end());
  testing::AttentionInputRecorder rec;
  engine::EngineOptions eo;
  eo.observer = &rec;
  engine::Engine(testing::test_data("dsv4-tiny"), eo).forward(held, 2);

  const auto src_ckpt = io::Checkpoint::open(testing::test_data("dsv4-tiny"));
  const StoredWeights src(src_ckpt);
  std::map<std::string, testing::OutputError> totals;
  std::map<std::string, std::map<std::string, testing::OutputError>> per_module;
  for (const char* method : {"max", "mse", "hessian"})
    totals[method] = testing::stored_output_error(rec, src, dir + "/" + method, &per_module[method]);
  size_t lower = 0, modules = 0;
  for (const auto& [module, m] : per_module["max"]) {
    ++modules;
    lower += testing::relative(per_module["hessian"].at(module)) < testing::relative(m);
  }
  for (const char* method : {"max", "mse", "hessian"})
    std::printf("attention linears, held-back rows: %-8s ||XW^T - XWq^T|| / ||XW^T|| = %.5f\n", method,
                testing::relative(totals[method]));
  std::printf("hessian below max on %zu of %zu attention linears\n", lower, modules);
  const double hessian = testing::relative(totals["hessian"]);
  const double max = testing::relative(totals["max"]);
  EXPECT_EQ(modules, 20u);  // wq_a, wq_b, wkv, wo_a, wo_b of 4 layers
  EXPECT_TRUE(std::isfinite(hessian) && hessian < max) << hessian << " vs max " << max;
  EXPECT_TRUE(lower * 4 >= modules * 3) << lower << " of " << modules;  // nearly everywhere, not on average only
}

TEST(ConvertHessian, BadStatisticsAreRefusedBeforeAnythingIsWritten) {
  const std::string dir = testing::fresh_temp_dir("convert-hessian-bad");
  auto expect_refused = [&](const std::string& args, const std::string& text) {
    const auto r = run_fp4kit(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(text), std::string::npos) << r.output;
  };
  expect_refused(testing::tiny_all_linear_args(dir + "/a", "hessian"), "--scales hessian needs --hessian FILE");
  expect_refused(testing::tiny_all_linear_args(dir + "/a", "mse") + " --hessian " + statistics().xtx, "only --scales hessian and --gptq read it");
  // Without the fallback flag, the MTP block has no statistics: named.
  expect_refused(testing::tiny_all_linear_args(dir + "/a", "hessian") + " --hessian " + statistics().xtx,
                 "no tensor 'mtp.0.attn.wkv.xtx_blocks' for weight 'mtp.0.attn.wkv.weight'");
  expect_refused(hessian_args(dir + "/a") + " --hessian-damping -1", "--hessian-damping");
  // An amax file is not XᵀX statistics.
  expect_refused(testing::tiny_all_linear_args(dir + "/a", "hessian") + " --hessian " + statistics().amax,
                 "not an XᵀX statistics file");
  // Statistics of another checkpoint: the model fingerprint differs.
  const io::SafetensorsFile real = io::SafetensorsFile::open(statistics().xtx);
  auto rewrite = [&](const std::string& path, const std::string& key, const std::string& value) {
    io::SafetensorsWriter w(path);
    auto meta = real.header().metadata;
    meta[key] = value;
    w.set_metadata(meta);
    for (const io::TensorInfo& t : real.tensors()) w.declare(t.name, t.dtype, t.shape);
    w.begin();
    for (const io::TensorInfo& t : w.layout()) w.write(t.name, real.read_all(*real.find(t.name)));
    w.commit();
  };
  rewrite(dir + "/other-model.safetensors", "model", "0123456789abcdef");
  expect_refused(testing::tiny_all_linear_args(dir + "/a", "hessian") + " --hessian " + dir + "/other-model.safetensors",
                 "XᵀX statistics of another checkpoint");
  // Statistics of another calibration run than the --calib file.
  rewrite(dir + "/other-run.safetensors", "fingerprint", "0123456789abcdef");
  expect_refused("convert " + testing::test_data("dsv4-tiny") + " " + dir + "/a --recipe all-linear --quiet --calib " +
                     statistics().amax + " --exclude '^mtp[.]' --scales hessian --hessian " + dir +
                     "/other-run.safetensors",
                 "another calibration run");
  EXPECT_FALSE(std::filesystem::exists(dir + "/a"));
}

}  // namespace
}  // namespace fp4kit
