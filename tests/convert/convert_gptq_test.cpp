// convert --gptq on the tiny V4 checkpoint with --recipe all-linear: full XᵀX from calibrate on two
// sequences; the output verifies and its report names each tensor's method ("mse+gptq"); XᵀX that
// is the identity gives the bytes of plain rounding; the layer-output error on the two held-back
// sequences is lower with GPTQ than without for each scale method; a NaN XᵀX leaves its weight to
// plain rounding and is counted; bad statistics and options are refused before anything is written;
// without a GPU, --device auto runs GPTQ on the CPU (its bytes) and --device cuda is refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <cstring>
#include <iterator>
#include <map>
#include <random>

#include "calib/calib_test_util.h"
#include "checkpoint_edit.h"
#include "calib/xtx_full_file.h"
#include "convert/layer_output_error.h"
#include "convert/tiny_all_linear_args.h"
#include "cuda/device.h"
#include "engine/engine.h"
#include "io/checkpoint_index.h"
#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"
#include "models/stored_weight.h"
#include "nan_aware.h"
#include "run_command.h"
#include "test_data.h"
#include "verify/verify_test_util.h"

namespace fp4kit {
namespace {

namespace fs = std::filesystem;
using testing::run_fp4kit;

// Calibration rows: 16 sequences of 96 ids drawn as the oracle's were (uniform in [2, 1024), BOS
// first) with another seed, 1536 rows per linear: GPTQ fits the calibration rows, and with fewer
// rows than a linear's input channels (the tiny wo_a has 384) it fits them at the expense of
// other inputs. The held-back rows are the oracle's four sequences.
constexpr int kCalibrationSequences = 16, kSequenceLength = 96;

struct Statistics {
  std::string dir, ids, amax, xtx;
};
const Statistics& statistics() {
  static const Statistics s = [] {
    Statistics st;
    st.dir = testing::shared_temp_dir("convert-gptq-stats");
    st.ids = st.dir + "/calib.ids";
    st.amax = st.dir + "/amax.safetensors";
    st.xtx = st.dir + "/xtx";
    std::mt19937 rng(1717);
    std::uniform_int_distribution<int> id(2, 1023);
    std::ofstream ids(st.ids);
    for (int r = 0; r < kCalibrationSequences; ++r) {
      ids << 0;
      for (int t = 1; t < kSequenceLength; ++t) ids << ' ' << id(rng);
      ids << '\n';
    }
    ids.close();
    const auto r = run_fp4kit("calibrate " + testing::test_data("dsv4-tiny") + " --data " + st.ids + " --quiet --out " +
                              st.amax + " --hessian " + st.xtx + " --hessian-mode full --force");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return st;
  }();
  return s;
}

// With the MTP block (which calibrate does not run) rounded without compensation.
std::string gptq_args(const std::string& out, const std::string& scales, const std::string& xtx = statistics().xtx) {
  std::string a = testing::tiny_all_linear_args(out, scales) + " --gptq --hessian " + xtx + " --gptq-missing rtn";
  if (scales == "hessian") a += " --hessian-missing mse";
  return a;
}

// A copy of the statistics directory with each matrix rewritten by `edit` (module, shape, values)
// and the index's JSON by `edit_index`; the layer files take the index's fingerprint.
using MatrixEdit = std::function<void(const std::string&, const std::vector<int64_t>&, std::vector<float>&)>;
void copy_statistics(const std::string& to, const MatrixEdit& edit,
                     const std::function<void(nlohmann::json&)>& edit_index = {}) {
  fs::create_directories(to);
  std::ifstream index_in(statistics().xtx + "/" + std::string(kXtxFullIndex));
  nlohmann::json index = nlohmann::json::parse(index_in);
  if (edit_index) edit_index(index);
  for (const fs::directory_entry& e : fs::directory_iterator(statistics().xtx)) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with("layer-")) continue;
    const io::SafetensorsFile in = io::SafetensorsFile::open(e.path().string());
    io::SafetensorsWriter w(to + "/" + name);
    auto metadata = in.header().metadata;
    metadata["fingerprint"] = index.at("fingerprint");
    w.set_metadata(metadata);
    for (const io::TensorInfo& t : in.tensors()) w.declare(t.name, t.dtype, t.shape);
    w.begin();
    for (const io::TensorInfo& t : w.layout()) {
      std::vector<std::byte> bytes = in.read_all(*in.find(t.name));
      if (t.dtype == DType::F32) {
        std::vector<float> v(bytes.size() / 4);
        std::memcpy(v.data(), bytes.data(), bytes.size());
        edit(t.name.substr(0, t.name.size() - kXtxFullSuffix.size()), t.shape, v);
        std::memcpy(bytes.data(), v.data(), bytes.size());
      }
      w.write(t.name, bytes);
    }
    w.commit();
  }
  std::ofstream(to + "/" + std::string(kXtxFullIndex)) << index.dump();
}

const MatrixEdit kUnchanged = [](const std::string&, const std::vector<int64_t>&, std::vector<float>&) {};

// Every tensor of two outputs with the same shards: how many differ (named in the failure).
size_t tensors_that_differ(const std::string& a_dir, const std::string& b_dir, size_t& compared) {
  const auto a = io::Checkpoint::open(a_dir), b = io::Checkpoint::open(b_dir);
  size_t differ = 0;
  for (const std::string& shard : b.shard_files())
    for (const io::TensorInfo& t : b.shard(shard).tensors()) {
      const io::TensorInfo* other = a.shard(shard).find(t.name);
      EXPECT_NE(other, nullptr) << t.name;
      if (!other) continue;
      ++compared;
      differ += a.shard(shard).read_all(*other) != b.shard(shard).read_all(t);
    }
  return differ;
}

TEST(ConvertGptq, VerifiesAndTheReportNamesEachTensorsMethod) {
  const std::string dir = testing::fresh_temp_dir("convert-gptq");
  const auto c = run_fp4kit(gptq_args(dir + "/out", "mse") + " --json " + dir + "/c.json");
  ASSERT_EQ(c.exit_code, 0) << c.output;
  const nlohmann::json cj = testing::load_json(dir + "/c.json");
  EXPECT_EQ(cj.at("gptq").at("tensors"), 34);
  EXPECT_EQ(cj.at("gptq").at("rtn_matrices"), 0);
  EXPECT_TRUE(cj.at("gptq").at("rows").get<uint64_t>() > 0);

  const auto v = run_fp4kit("verify " + dir + "/out --source " + testing::test_data("dsv4-tiny") + " --json " + dir +
                            "/v.json");
  ASSERT_EQ(v.exit_code, 0) << v.output;
  const nlohmann::json vj = testing::load_json(dir + "/v.json");
  for (const nlohmann::json& t : vj.at("tensors_numerics")) {
    const std::string name = t.at("name"), method = t.at("scale_method");
    // Routed experts are MXFP4: cast; the MTP block has no statistics: mse alone; the rest: mse+gptq.
    const std::string want = name.find(".ffn.experts.") != std::string::npos ? "cast"
                             : name.starts_with("mtp.")                       ? "mse"
                                                                               : "mse+gptq";
    EXPECT_EQ(method, want) << name;
  }
  EXPECT_EQ(vj.at("scale_methods").at("mse+gptq"), 34);

  // The wider SQNR margin of GPTQ weights still catches codes that do not encode the source: every
  // code of one weight changed (its scales left alone) fails verify, naming that weight.
  const std::string weight = "layers.1.attn.wq_b.weight";
  const std::string shard = testing::shard_holding(dir + "/out", weight);
  const io::TensorInfo t = *io::SafetensorsFile::open(shard).find(weight);
  std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
  uint64_t header = 0;
  f.read(reinterpret_cast<char*>(&header), 8);
  std::vector<char> codes(t.nbytes());
  f.seekg(static_cast<std::streamoff>(8 + header + t.begin));
  f.read(codes.data(), static_cast<std::streamsize>(codes.size()));
  for (char& b : codes) b = static_cast<char>(b ^ 0x36);
  f.seekp(static_cast<std::streamoff>(8 + header + t.begin));
  f.write(codes.data(), static_cast<std::streamsize>(codes.size()));
  f.close();
  const auto broken = run_fp4kit("verify " + dir + "/out --source " + testing::test_data("dsv4-tiny"));
  EXPECT_EQ(broken.exit_code, 1) << broken.output;
  EXPECT_NE(broken.output.find("FAIL [numerics.low_sqnr] '" + weight + "'"), std::string::npos) << broken.output;
}

TEST(ConvertGptq, IdentityStatisticsGiveThePlainRoundingBytes) {
  const std::string dir = testing::fresh_temp_dir("convert-gptq-identity");
  copy_statistics(dir + "/identity", [](const std::string&, const std::vector<int64_t>& shape, std::vector<float>& v) {
    const size_t k = static_cast<size_t>(shape.back());
    std::fill(v.begin(), v.end(), 0.0f);
    for (size_t g = 0; g < v.size() / (k * k); ++g)
      for (size_t i = 0; i < k; ++i) v[g * k * k + i * k + i] = 2.5f;
  });
  for (const char* scales : {"max", "mse"}) {
    const std::string g = dir + "/g-" + scales, p = dir + "/p-" + scales;
    ASSERT_EQ(run_fp4kit(gptq_args(g, scales, dir + "/identity")).exit_code, 0);
    ASSERT_EQ(run_fp4kit(testing::tiny_all_linear_args(p, scales)).exit_code, 0);
    size_t compared = 0;
    EXPECT_EQ(tensors_that_differ(g, p, compared), 0u) << scales;
    EXPECT_TRUE(compared > 100u) << compared;
  }
}

TEST(ConvertGptq, LowerLayerOutputErrorThanWithoutOnHeldBackActivations) {
  const std::string dir = testing::fresh_temp_dir("convert-gptq-error");
#if defined(FP4KIT_SANITIZED_BUILD)
  // Nine conversions and six verifies of F64 GPTQ cost half a minute under ASan: the sanitized build
  // runs the method with the most code (hessian scales, GPTQ, act order), the Release build all three.
  const std::vector<std::string> methods = {"hessian"};
#else
  const std::vector<std::string> methods = {"max", "mse", "hessian"};
#endif
  for (const std::string& m : methods) {
    const auto plain = run_fp4kit(m == "hessian" ? testing::tiny_all_linear_args(dir + "/" + m, m) + " --hessian " + statistics().xtx +
                                                       " --hessian-missing mse"
                                                 : testing::tiny_all_linear_args(dir + "/" + m, m));
    ASSERT_EQ(plain.exit_code, 0) << plain.output;
    const auto gptq = run_fp4kit(gptq_args(dir + "/" + m + "+gptq", m));
    ASSERT_EQ(gptq.exit_code, 0) << gptq.output;
    const auto ordered = run_fp4kit(gptq_args(dir + "/" + m + "+gptq-act-order", m) + " --gptq-act-order");
    ASSERT_EQ(ordered.exit_code, 0) << ordered.output;
  }
  // The held-back sequences: the oracle's four, which calibration did not see.
  const CalibrationBatch held = testing::load_calibration_ids(testing::test_data("calib/oracle/calib_ids.safetensors"));
  testing::AttentionInputRecorder rec;
  engine::EngineOptions eo;
  eo.observer = &rec;
  engine::Engine(testing::test_data("dsv4-tiny"), eo).forward(held.ids, held.batch);

  const auto src_ckpt = io::Checkpoint::open(testing::test_data("dsv4-tiny"));
  const StoredWeights src(src_ckpt);
  std::map<std::string, testing::OutputError> totals;
  for (const std::string& m : methods)
    for (const std::string& variant : {m, m + "+gptq", m + "+gptq-act-order"})
      totals[variant] = testing::stored_output_error(rec, src, dir + "/" + variant);
  for (const std::string& m : methods) {
    const double plain = testing::relative(totals[m]);
    const double gptq = testing::relative(totals[m + "+gptq"]);
    const double ordered = testing::relative(totals[m + "+gptq-act-order"]);
    std::printf("attention linears, held-back rows: %-8s %.5f  +gptq %.5f  +gptq --gptq-act-order %.5f\n", m.c_str(),
                plain, gptq, ordered);
    EXPECT_TRUE(testing::finite_below(gptq, plain)) << m;
    EXPECT_TRUE(testing::finite_below(ordered, plain)) << m;
  }
  // GPTQ trades weight error for output error: every output verifies, and the weights' SQNR
  // against the source stays within verify's margin for them (12 dB below a fresh quantization).
  double worst = 0;
  std::string worst_name;
  for (const std::string& m : methods)
    for (const std::string& variant : {m + "+gptq", m + "+gptq-act-order"}) {
      const auto v = run_fp4kit("verify " + dir + "/" + variant + " --source " + testing::test_data("dsv4-tiny") +
                                " --json " + dir + "/" + variant + ".json");
      EXPECT_EQ(v.exit_code, 0) << variant << "\n" << v.output;
      const nlohmann::json report = testing::load_json(dir + "/" + variant + ".json");
      for (const nlohmann::json& t : report.at("tensors_numerics")) {
        if (!t.at("scale_method").get<std::string>().ends_with("+gptq") || t.at("sqnr_db").is_null()) continue;
        const double drop = t.at("expected_sqnr_db").get<double>() - t.at("sqnr_db").get<double>();
        if (drop > worst) worst = drop, worst_name = variant + " " + t.at("name").get<std::string>();
      }
    }
  std::printf("largest SQNR drop of a GPTQ weight below a fresh max quantization: %.2f dB (%s)\n", worst,
              worst_name.c_str());
  EXPECT_TRUE(testing::finite_below(worst, 12.0)) << worst_name;
}

// XᵀX summed over fewer rows than a weight's input channels is singular and GPTQ fits it to the
// calibration rows: convert warns, naming the weight with the fewest rows per channel. The tiny
// model's statistics (1536 rows, inputs at most 1024 wide) draw no warning.
TEST(ConvertGptq, StatisticsFromFewerRowsThanInputsAreWarnedAbout) {
  const std::string dir = testing::fresh_temp_dir("convert-gptq-few-rows");
  const std::string warning = "XᵀX summed over fewer rows than their input channels";
  // The plan alone (its warnings printed, nothing converted).
  const auto loud = [](std::string args) { return args.erase(args.find(" --quiet"), 8) + " --dry-run"; };
  const auto enough = run_fp4kit(loud(gptq_args(dir + "/enough", "max")));
  ASSERT_EQ(enough.exit_code, 0) << enough.output;
  EXPECT_EQ(enough.output.find(warning), std::string::npos) << enough.output;

  copy_statistics(dir + "/few", [](const std::string&, const std::vector<int64_t>&, std::vector<float>&) {});
  const std::string module = "layers.1.attn.wq_a";
  bool rewritten = false;
  for (const fs::directory_entry& e : fs::directory_iterator(dir + "/few")) {
    if (!e.path().filename().string().starts_with("layer-")) continue;
    const io::SafetensorsFile f = io::SafetensorsFile::open(e.path().string());
    const io::TensorInfo* t = f.find(module + ".rows");
    if (!t) continue;
    const int64_t ten = 10;
    std::fstream out(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(static_cast<std::streamoff>(f.header().data_offset + t->begin));
    out.write(reinterpret_cast<const char*>(&ten), 8);
    rewritten = true;
  }
  ASSERT_TRUE(rewritten) << module << ".rows";
  const auto few = run_fp4kit(loud(gptq_args(dir + "/few-out", "max", dir + "/few")));
  ASSERT_EQ(few.exit_code, 0) << few.output;
  EXPECT_NE(few.output.find("--gptq: 1 weight has " + warning), std::string::npos) << few.output;
  EXPECT_NE(few.output.find("'" + module + "', 10 rows for "), std::string::npos) << few.output;
}

TEST(ConvertGptq, NanStatisticsAreRoundedPlainlyAndCounted) {
  const std::string dir = testing::fresh_temp_dir("convert-gptq-nan");
  copy_statistics(dir + "/nan", [](const std::string& module, const std::vector<int64_t>&, std::vector<float>& v) {
    if (module == "layers.1.attn.wq_b") v[5] = std::nanf("");
  });
  const auto g = run_fp4kit(gptq_args(dir + "/g", "max", dir + "/nan") + " --json " + dir + "/g.json");
  ASSERT_EQ(g.exit_code, 0) << g.output;
  const nlohmann::json j = testing::load_json(dir + "/g.json");
  EXPECT_EQ(j.at("gptq").at("rtn_matrices"), 1);
  ASSERT_EQ(j.at("gptq").at("fallbacks").size(), 1u);
  const std::string why = j.at("gptq").at("fallbacks")[0];
  EXPECT_NE(why.find("layers.1.attn.wq_b: XᵀX holds NaN or Inf"), std::string::npos) << why;
  ASSERT_EQ(run_fp4kit(testing::tiny_all_linear_args(dir + "/p", "max")).exit_code, 0);
  const auto gc = io::Checkpoint::open(dir + "/g"), pc = io::Checkpoint::open(dir + "/p");
  const StoredWeights gw(gc), pw(pc);
  EXPECT_TRUE(gw.read_f32("layers.1.attn.wq_b.weight") == pw.read_f32("layers.1.attn.wq_b.weight"));
  EXPECT_FALSE(gw.read_f32("layers.1.attn.wq_a.weight") == pw.read_f32("layers.1.attn.wq_a.weight"));
  EXPECT_EQ(run_fp4kit("verify " + dir + "/g --source " + testing::test_data("dsv4-tiny")).exit_code, 0);
}

// Without a GPU (or without CUDA in the build): --device auto runs GPTQ on the CPU, with the CPU's
// bytes, and --device cuda is refused with the reason. With one, CudaGptq.ConvertOnTheGpu* covers
// the device.
TEST(ConvertGptq, DeviceAutoWithoutAGpuIsTheCpuAndCudaIsRefused) {
  std::string why;
  if (cuda::probe(0, &why)) GTEST_SKIP() << "a GPU is present: CudaGptq.ConvertOnTheGpuStaysCloseToTheCpuRun covers it";
  const std::string dir = testing::fresh_temp_dir("convert-gptq-device");
  const auto a = run_fp4kit(gptq_args(dir + "/auto", "max") + " --device auto --json " + dir + "/auto.json");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(testing::load_json(dir + "/auto.json").at("gptq").at("device"), "cpu");
  ASSERT_EQ(run_fp4kit(gptq_args(dir + "/cpu", "max")).exit_code, 0);
  size_t compared = 0;
  EXPECT_EQ(tensors_that_differ(dir + "/auto", dir + "/cpu", compared), 0u);
  EXPECT_TRUE(compared > 100u) << compared;
  const auto c = run_fp4kit(gptq_args(dir + "/cuda", "max") + " --device cuda");
  EXPECT_EQ(c.exit_code, 2) << c.output;
  EXPECT_NE(c.output.find("--device cuda: " + why), std::string::npos) << c.output;
  EXPECT_FALSE(fs::exists(dir + "/cuda"));
}

TEST(ConvertGptq, BadStatisticsAndOptionsAreRefusedBeforeAnythingIsWritten) {
  const std::string dir = testing::fresh_temp_dir("convert-gptq-bad");
  auto expect_refused = [&](const std::string& args, const std::string& text) {
    const auto r = run_fp4kit(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(text), std::string::npos) << r.output;
  };
  expect_refused(testing::tiny_all_linear_args(dir + "/a", "max") + " --gptq", "--gptq needs --hessian DIR");
  expect_refused(testing::tiny_all_linear_args(dir + "/a", "max") + " --gptq --hessian " + statistics().amax,
                 "--gptq needs the full XᵀX");
  expect_refused(testing::tiny_all_linear_args(dir + "/a", "max") + " --gptq --hessian " + dir, "not a full XᵀX statistics directory");
  // Without --gptq-missing rtn, the MTP block has no statistics: named.
  expect_refused(testing::tiny_all_linear_args(dir + "/a", "max") + " --gptq --hessian " + statistics().xtx, "no XᵀX of 'mtp.0.");
  expect_refused(gptq_args(dir + "/a", "max") + " --gptq-block 24", "--gptq-block 24: must be a positive multiple of 16");
  expect_refused(gptq_args(dir + "/a", "max") + " --gptq-damping -1", "--gptq-damping");
  expect_refused(testing::tiny_all_linear_args(dir + "/a", "max") + " --gptq --hessian " + statistics().xtx + " --gptq-missing maybe",
                 "--gptq-missing maybe: unknown");
  // Only GPTQ runs on the GPU in convert; the device is one of cpu, cuda, auto.
  expect_refused(testing::tiny_all_linear_args(dir + "/a", "max") + " --device cuda",
                 "--device cuda: only --gptq runs on the GPU in convert");
  expect_refused(gptq_args(dir + "/a", "max") + " --device gpu", "--device");
  // Statistics of another checkpoint, of another calibration run than --calib, a layer file of
  // another run, a layer file missing.
  copy_statistics(dir + "/other-model", kUnchanged, [](nlohmann::json& j) { j["model"] = "0123456789abcdef"; });
  expect_refused(gptq_args(dir + "/a", "max", dir + "/other-model"), "XᵀX statistics of another checkpoint");
  copy_statistics(dir + "/other-run", kUnchanged, [](nlohmann::json& j) { j["fingerprint"] = "0123456789abcdef"; });
  ASSERT_EQ(run_fp4kit(gptq_args(dir + "/b", "max", dir + "/other-run") + " --dry-run").exit_code, 0);
  expect_refused("convert " + testing::test_data("dsv4-tiny") + " " + dir + "/a --recipe all-linear --quiet --calib " +
                     statistics().amax + " --exclude '^mtp[.]' --gptq --hessian " + dir + "/other-run",
                 "XᵀX statistics of another calibration run than");
  fs::copy_file(statistics().xtx + "/" + xtx_full_layer_file(1), dir + "/other-run/" + xtx_full_layer_file(1),
                fs::copy_options::overwrite_existing);
  expect_refused(gptq_args(dir + "/a", "max", dir + "/other-run"), "layer-001.safetensors: a layer file of another calibration run");
  copy_statistics(dir + "/gap", kUnchanged);
  fs::remove(dir + "/gap/" + xtx_full_layer_file(2));
  expect_refused(gptq_args(dir + "/a", "max", dir + "/gap"), "layer-002.safetensors: missing");
  EXPECT_FALSE(fs::exists(dir + "/a"));
}

}  // namespace
}  // namespace fp4kit
