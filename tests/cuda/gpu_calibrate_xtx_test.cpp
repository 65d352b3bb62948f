// `calibrate --device cuda --hessian` on the tiny checkpoint: the XᵀX statistics summed on the GPU
// against the CPU's files for the same batch.
//
// The F32 GPU pass computes every activation in another order than the CPU engine (its logits are
// within 1e-5 of the CPU's, its amax values within 2e-5 of transformers'), so the statistics cannot
// agree bit for bit. Each entry of a sum H = Σ x·xᵀ moves by at most 2δ·√(H_aa·H_bb) when every
// column of x moves by a relative (L2) δ (Cauchy-Schwarz), so entries are held to
// |H_gpu - H_cpu| <= 1e-4·√(H_aa·H_bb), the diagonals taken as the larger of the two files' (five
// times the amax tolerance of the calibration tests, on the F32 values of the files). A lost or
// doubled row, a wrong routing weight or a wrong chunk moves entries by 1/rows or more (at most 768
// rows here: over 1e-3). Row counts, module sets and shapes must be equal.
//
// The BF16 pass (the default) rounds what its products read to BF16 and shows routed experts'
// rows from its grouped kernels, so it is held to what must hold of any rows: the modules of its
// amax file, each expert's w1 and w3 equal, T·k rows over a layer's experts, and
// amax² <= max_a H_aa <= rows·amax² against the amax file of the same run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/amax_table.h"
#include "calib/calib_test_util.h"
#include "calib/calibrate.h"
#include "calib/xtx_full_file.h"
#include "calib/xtx_table.h"
#include "gpu_engine/gpu_layer_runner.h"
#include "gpu_test.h"
#include "io/safetensors_file.h"
#include "nan_aware.h"
#include "run_command.h"
#include "test_data.h"

namespace fp4kit {
namespace {

constexpr double kTolerance = 1e-4;

CalibrationBatch oracle_ids() { return testing::load_calibration_ids(testing::test_data("calib/oracle/calib_ids.safetensors")); }

struct Calibration {
  bool all_experts = false;
  W2Input w2 = W2Input::Unweighted;
  int64_t chunk_sequences = 0;  // GPU: at most this many sequences per chunk (0: one chunk)
  bool full = false;
  std::string name() const {
    return std::string(all_experts ? "all experts" : "routed") + ", w2 " + std::string(w2_input_name(w2)) +
           (chunk_sequences ? ", " + std::to_string(chunk_sequences) + " sequence per chunk" : "") +
           (full ? ", full" : ", blocks");
  }
};

CalibrateReport run(const Calibration& s, bool gpu, const std::string& out, const std::string& hessian,
                    gpu_engine::Precision precision = gpu_engine::Precision::F32) {
  CalibrateOptions o;
  o.all_experts = s.all_experts;
  o.w2_input = s.w2;
  o.hessian_path = hessian;
  o.hessian_full = s.full;
  if (gpu) {
    o.runner = gpu_engine::gpu_runner_factory(precision, {}, s.chunk_sequences);
    o.device = precision == gpu_engine::Precision::F32 ? "cuda" : "cuda bf16";
  }
  return calibrate(testing::test_data("dsv4-tiny"), oracle_ids(), out, o);
}

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string metadata(const std::string& path, const std::string& key) {
  return io::SafetensorsFile::open(path).header().metadata.at(key);
}

// Matrices [groups][k][k] of the two devices, entry by entry against kTolerance·√(H_aa·H_bb);
// the worst ratio |difference| / bound goes into `worst` (NaN-keeping).
void expect_close(const float* gpu, const float* cpu, int64_t groups, int64_t k, const std::string& what, double& worst) {
  for (int64_t g = 0; g < groups; ++g) {
    const float* G = gpu + g * k * k;
    const float* C = cpu + g * k * k;
    for (int64_t a = 0; a < k; ++a)
      for (int64_t b = 0; b < k; ++b) {
        const double daa = std::max<double>(G[a * k + a], C[a * k + a]), dbb = std::max<double>(G[b * k + b], C[b * k + b]);
        const double bound = kTolerance * std::sqrt(daa * dbb);
        const double diff = std::fabs(static_cast<double>(G[a * k + b]) - C[a * k + b]);
        ASSERT_TRUE(diff <= bound) << what << " group " << g << " [" << a << "," << b << "]: GPU " << G[a * k + b]
                                   << ", CPU " << C[a * k + b] << ", bound " << bound;
        if (bound > 0) worst = testing::max_keeping_nan(worst, diff / bound * kTolerance);
      }
  }
}

// The blocks [K/16][16][16] as F32, as the file holds them.
std::vector<float> as_f32(const XtxBlocks& b) { return std::vector<float>(b.sums.begin(), b.sums.end()); }

void expect_same_blocks(const std::string& gpu_file, const std::string& cpu_file) {
  const XtxTable gpu = XtxTable::load(gpu_file), cpu = XtxTable::load(cpu_file);
  ASSERT_EQ(gpu.size(), cpu.size());
  double worst = 0;
  for (const auto& [module, c] : cpu.modules()) {
    ASSERT_TRUE(gpu.modules().count(module)) << module << " missing on the GPU";
    const XtxBlocks& g = gpu.modules().at(module);
    EXPECT_EQ(g.rows, c.rows) << module;
    ASSERT_EQ(g.cols, c.cols) << module;
    const std::vector<float> gf = as_f32(g), cf = as_f32(c);
    for (int64_t j = 0; j < c.cols / 16; ++j)
      expect_close(gf.data() + j * 256, cf.data() + j * 256, 1, 16, module + " block " + std::to_string(j), worst);
  }
  std::printf("%s: %zu modules, worst |GPU - CPU| %.3g of sqrt(H_aa*H_bb)\n", gpu_file.c_str(), cpu.size(), worst);
  EXPECT_EQ(metadata(gpu_file, "format"), kXtxFormat);
  EXPECT_EQ(metadata(gpu_file, "model"), metadata(cpu_file, "model"));
}

// Every "<module>.xtx" and ".rows" of a full statistics directory, read back.
struct FullMatrix {
  int64_t groups = 1, k = 0, rows = 0;
  std::vector<float> values;
};

std::map<std::string, FullMatrix> read_full(const std::string& dir) {
  std::ifstream in(dir + "/" + std::string(kXtxFullIndex));
  const nlohmann::json index = nlohmann::json::parse(in);
  std::map<std::string, FullMatrix> out;
  for (const auto& [module, file] : index.at("modules").items()) {
    const io::SafetensorsFile f = io::SafetensorsFile::open(dir + "/" + file.get<std::string>());
    const io::TensorInfo& t = f.at(module + std::string(kXtxFullSuffix));
    FullMatrix& m = out[module];
    m.groups = t.shape.size() == 3 ? t.shape[0] : 1;
    m.k = t.shape.back();
    m.values.resize(static_cast<size_t>(t.numel()));
    f.read(t, std::as_writable_bytes(std::span(m.values)));
    f.read(f.at(module + ".rows"), std::as_writable_bytes(std::span(&m.rows, 1)));
  }
  return out;
}

void expect_same_full(const std::string& gpu_dir, const std::string& cpu_dir) {
  const std::map<std::string, FullMatrix> gpu = read_full(gpu_dir), cpu = read_full(cpu_dir);
  ASSERT_EQ(gpu.size(), cpu.size());
  double worst = 0;
  for (const auto& [module, c] : cpu) {
    ASSERT_TRUE(gpu.count(module)) << module << " missing on the GPU";
    const FullMatrix& g = gpu.at(module);
    EXPECT_EQ(g.rows, c.rows) << module;
    ASSERT_EQ(g.groups, c.groups) << module;
    ASSERT_EQ(g.k, c.k) << module;
    expect_close(g.values.data(), c.values.data(), c.groups, c.k, module, worst);
  }
  std::printf("%s: %zu modules, worst |GPU - CPU| %.3g of sqrt(H_aa*H_bb)\n", gpu_dir.c_str(), cpu.size(), worst);
  const XtxFullStatistics g = XtxFullStatistics::open(gpu_dir), c = XtxFullStatistics::open(cpu_dir);
  EXPECT_EQ(g.model(), c.model());
}

const Calibration kCalibrations[] = {
    {false, W2Input::Unweighted, 0, false},
    {true, W2Input::Weighted, 0, false},
    {false, W2Input::Weighted, 1, false},
};

TEST(CudaCalibrateXtx, BlocksMatchTheCpuRoutedAllExpertsAndChunked) {
  FP4KIT_REQUIRE_GPU();
  const std::string dir = testing::fresh_temp_dir("gpu-calib-xtx");
  int n = 0;
  for (const Calibration& s : kCalibrations) {
    SCOPED_TRACE(s.name());
    const std::string p = dir + "/" + std::to_string(n++);
    const CalibrateReport cpu = run(s, false, p + "-cpu.safetensors", p + "-cpu-xtx.safetensors");
    const CalibrateReport gpu = run(s, true, p + "-gpu.safetensors", p + "-gpu-xtx.safetensors");
    EXPECT_EQ(gpu.xtx_entries, cpu.xtx_entries);
    EXPECT_EQ(gpu.xtx_entries, AmaxTable::load(p + "-gpu.safetensors").size());  // the amax file's modules
    expect_same_blocks(p + "-gpu-xtx.safetensors", p + "-cpu-xtx.safetensors");
    EXPECT_EQ(metadata(p + "-gpu-xtx.safetensors", "fingerprint"), metadata(p + "-gpu.safetensors", "fingerprint"));
    if (s.chunk_sequences) {
      ASSERT_FALSE(gpu.per_layer.empty());
      EXPECT_EQ(gpu.per_layer[0].timing.chunks, oracle_ids().batch);
    }
  }
  // The amax file of a GPU run is the same with or without the statistics.
  run(kCalibrations[0], true, dir + "/plain.safetensors", "");
  EXPECT_EQ(bytes_of(dir + "/plain.safetensors"), bytes_of(dir + "/0-gpu.safetensors"));
}

TEST(CudaCalibrateXtx, FullMatricesMatchTheCpuInOneChunkAndInChunks) {
  FP4KIT_REQUIRE_GPU();
  const std::string dir = testing::fresh_temp_dir("gpu-calib-xtx-full");
  int n = 0;
  for (Calibration s : {Calibration{true, W2Input::Weighted, 0, true}, Calibration{false, W2Input::Unweighted, 1, true}}) {
    SCOPED_TRACE(s.name());
    const std::string p = dir + "/" + std::to_string(n++);
    const CalibrateReport cpu = run(s, false, p + "-cpu.safetensors", p + "-cpu-xtx");
    const CalibrateReport gpu = run(s, true, p + "-gpu.safetensors", p + "-gpu-xtx");
    EXPECT_EQ(gpu.xtx_entries, cpu.xtx_entries);
    expect_same_full(p + "-gpu-xtx", p + "-cpu-xtx");
    EXPECT_EQ(XtxFullStatistics::open(p + "-gpu-xtx").fingerprint(), metadata(p + "-gpu.safetensors", "fingerprint"));
  }
}

// max_a H_aa of a module's blocks: at least amax² (the largest element's own square) and at most
// rows·amax² (every row's square at most amax²), up to the F32 roundings of the two files.
void expect_diagonal_within_amax(const XtxBlocks& b, float amax, const std::string& module) {
  double top = 0;
  for (int64_t j = 0; j < b.cols / 16; ++j)
    for (int a = 0; a < 16; ++a) top = testing::max_keeping_nan(top, b.sums[static_cast<size_t>(j * 256 + a * 17)]);
  const double a2 = static_cast<double>(amax) * amax;
  EXPECT_TRUE(top >= a2 * (1 - 1e-6) && top <= static_cast<double>(b.rows) * a2 * (1 + 1e-6))
      << module << ": largest diagonal " << top << ", amax " << amax << ", rows " << b.rows;
}

TEST(CudaCalibrateXtx, Bf16PassGroupedExpertsAreConsistentWithItsAmax) {
  FP4KIT_REQUIRE_GPU();
  const std::string dir = testing::fresh_temp_dir("gpu-calib-xtx-bf16");
  const CalibrationBatch ids = oracle_ids();
  for (const W2Input w2 : {W2Input::Unweighted, W2Input::Weighted}) {
    SCOPED_TRACE(std::string(w2_input_name(w2)));
    const std::string p = dir + "/" + std::string(w2_input_name(w2));
    Calibration s;
    s.w2 = w2;
    const CalibrateReport r = run(s, true, p + ".safetensors", p + "-xtx.safetensors", gpu_engine::Precision::Bf16);
    const XtxTable xtx = XtxTable::load(p + "-xtx.safetensors");
    const AmaxTable amax = AmaxTable::load(p + ".safetensors");
    ASSERT_EQ(xtx.size(), amax.size());
    std::map<int64_t, int64_t> expert_rows;  // layer -> rows over its routed experts' w1
    for (const auto& [module, b] : xtx.modules()) {
      ASSERT_TRUE(amax.has(module)) << module;
      expect_diagonal_within_amax(b, amax.at(module), module);
      const size_t experts = module.find(".ffn.experts.");
      if (experts == std::string::npos) {
        EXPECT_EQ(b.rows, ids.batch * ids.seq) << module;
        continue;
      }
      const std::string expert = module.substr(0, module.size() - 3);
      EXPECT_EQ(b.rows, xtx.modules().at(expert + ".w2").rows) << module;
      if (!module.ends_with(".w1")) continue;
      expert_rows[std::stoll(module.substr(7, module.find('.', 7) - 7))] += b.rows;
      EXPECT_TRUE(b.sums == xtx.modules().at(expert + ".w3").sums) << module << ": w1's and w3's rows differ";
    }
    ASSERT_EQ(expert_rows.size(), r.per_layer.size());
    for (const auto& [layer, rows] : expert_rows) EXPECT_EQ(rows, ids.batch * ids.seq * 2) << "layer " << layer;  // top-2
  }
}

std::string calibrate_args(const std::string& out) {
  return "calibrate " + testing::test_data("dsv4-tiny") + " --data " +
         testing::test_data("calib/oracle/calib_ids.safetensors") + " --device cuda --quiet --out " + out;
}

// Every file of a full statistics directory, by name.
std::map<std::string, std::string> files_of(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out[e.path().filename().string()] = bytes_of(e.path().string());
  return out;
}

TEST(CudaCalibrateXtxCli, KilledAfterALayerResumesToTheSameFiles) {
  FP4KIT_REQUIRE_GPU();
  const std::string dir = testing::fresh_temp_dir("gpu-calib-xtx-cli");
  for (const std::string mode : {"blocks", "full"}) {
    SCOPED_TRACE(mode);
    const std::string flags = " --hessian-mode " + mode + " --hessian " + dir + "/";
    const auto whole = testing::run_fp4kit(calibrate_args(dir + "/whole-" + mode + ".safetensors") + flags + "whole-" + mode);
    ASSERT_EQ(whole.exit_code, 0) << whole.output;
    ::setenv(kCalibrateCrashAfterLayersEnv, "2", 1);
    const auto killed = testing::run_fp4kit(calibrate_args(dir + "/k-" + mode + ".safetensors") + flags + "k-" + mode);
    ::unsetenv(kCalibrateCrashAfterLayersEnv);
    EXPECT_EQ(killed.exit_code, 137) << killed.output;
    EXPECT_FALSE(std::filesystem::exists(dir + "/k-" + mode + ".safetensors"));
    const auto resumed =
        testing::run_fp4kit(calibrate_args(dir + "/k-" + mode + ".safetensors") + flags + "k-" + mode + " --resume");
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_EQ(bytes_of(dir + "/k-" + mode + ".safetensors"), bytes_of(dir + "/whole-" + mode + ".safetensors"));
    if (mode == "blocks") {
      EXPECT_EQ(bytes_of(dir + "/k-blocks"), bytes_of(dir + "/whole-blocks"));
      EXPECT_FALSE(bytes_of(dir + "/whole-blocks").empty());
    } else {
      const auto a = files_of(dir + "/k-full"), b = files_of(dir + "/whole-full");
      EXPECT_EQ(a.size(), 5u);  // four layers and the index
      EXPECT_TRUE(a == b);
    }
  }
}

}  // namespace
}  // namespace fp4kit
