// The run-time ISA choice: names, what this CPU is found to run (checked against the compiler's own
// CPU detection on x86), the fallback chain, and FP4KIT_ISA leaving the program's output unchanged.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>

#include "engine/matmul.h"
#include "formats/fp8_block.h"
#include "formats/isa.h"
#include "formats/mxfp4.h"
#include "formats/mxfp4_cast.h"
#include "formats/nvfp4.h"
#include "formats/nvfp4_scale_search.h"
#include "isa_cases.h"
#include "synth/random_fill.h"
#include "verify/tensor_error.h"
#include "run_command.h"
#include "test_data.h"

namespace fp4kit {
namespace {

constexpr Isa kAll[] = {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon, Isa::Sve, Isa::Sve2};

TEST(Isa, NamesRoundTripAndUnknownNamesAreRejected) {
  for (Isa isa : kAll) EXPECT_EQ(isa_from_name(isa_name(isa)), isa) << isa_name(isa);
  EXPECT_FALSE(isa_from_name("avx"));
  EXPECT_FALSE(isa_from_name(""));
  EXPECT_FALSE(isa_from_name("AVX2"));
}

TEST(Isa, SimdIsasAreSupportedBestFirstAndThePreferredOneLeads) {
  const std::vector<Isa> simd = simd_isas();
  std::string names;
  for (Isa isa : simd) names += std::string(isa_name(isa)) + " ";
  RecordProperty("simd_isas", names);
  std::printf("SIMD ISAs this CPU runs: %s\n", names.empty() ? "(none)" : names.c_str());
  for (Isa isa : simd) {
    EXPECT_TRUE(isa_supported(isa)) << isa_name(isa);
    EXPECT_NE(isa, Isa::Scalar);
  }
  EXPECT_TRUE(isa_supported(Isa::Scalar));
  if (std::getenv("FP4KIT_ISA") == nullptr) {
    EXPECT_EQ(preferred_isa(), simd.empty() ? Isa::Scalar : simd.front());
  }
}

#if defined(__x86_64__)
TEST(Isa, X86TargetsFollowTheCompilersCpuDetection) {
  // Highway's AVX2 target needs AVX2, FMA, F16C and BMI2; its AVX-512 one F, VL, DQ and BW.
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi2");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
  EXPECT_EQ(isa_supported(Isa::Avx2), avx2);
  EXPECT_EQ(isa_supported(Isa::Avx512), avx512);
  for (Isa isa : {Isa::Neon, Isa::Sve, Isa::Sve2}) EXPECT_FALSE(isa_supported(isa)) << isa_name(isa);
}
#endif

#if defined(__aarch64__)
TEST(Isa, Aarch64AlwaysRunsNeon) {
  EXPECT_TRUE(isa_supported(Isa::Neon));
  for (Isa isa : {Isa::Avx2, Isa::Avx512}) EXPECT_FALSE(isa_supported(isa)) << isa_name(isa);
}
#endif

TEST(Isa, EverySimdIsaHasVectorCodeInEveryFastPath) {
  // A missing entry would make a test compare the reference with itself: each module must hand out
  // vector code for every SIMD ISA the CPU runs (its own, or the ISA it falls back to).
  FP4KIT_REQUIRE_SIMD();
  for (Isa isa : simd_isas()) {
    SCOPED_TRACE(isa_name(isa));
    EXPECT_NE(nvfp4_simd::kernels(isa), nullptr);
    EXPECT_NE(nvfp4_search_simd::kernels(isa), nullptr);
    EXPECT_NE(mxfp4_simd::kernels(isa), nullptr);
    EXPECT_NE(fp8_block_simd::kernels(isa), nullptr);
    EXPECT_NE(mxfp4_cast_simd::cast_kernel(isa), nullptr);
    EXPECT_NE(engine::matmul_simd::kernels_for(isa), nullptr);
    EXPECT_NE(verify::tensor_error_add_kernel(isa), nullptr);
    EXPECT_NE(synth::random_fill_simd::fill_for(isa), nullptr);
  }
}

TEST(Isa, FallbacksEndAtTheReference) {
  EXPECT_EQ(isa_fallback(Isa::Avx512), Isa::Avx2);
  EXPECT_EQ(isa_fallback(Isa::Avx2), Isa::Scalar);
  EXPECT_EQ(isa_fallback(Isa::Sve2), Isa::Sve);
  EXPECT_EQ(isa_fallback(Isa::Sve), Isa::Neon);
  EXPECT_EQ(isa_fallback(Isa::Neon), Isa::Scalar);
  EXPECT_EQ(isa_fallback(Isa::Scalar), Isa::Scalar);
}

// Every file under `dir`, by relative path, with its bytes.
std::map<std::string, std::string> files_of(const std::filesystem::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    out[std::filesystem::relative(e.path(), dir).string()] = std::string(std::istreambuf_iterator<char>(in), {});
  }
  return out;
}

TEST(Isa, TheProgramsOutputIsTheSameUnderEveryIsa) {
  // FP4KIT_ISA picks the ISA of a whole run; dequant (FP8-block and MXFP4 kernels) and synth (the
  // random fill) must write the same bytes under each.
  const std::string model = testing::test_data("dsv4-tiny");
  const std::string dir = testing::fresh_temp_dir("isa_outputs");
  std::map<std::string, std::string> reference_dequant, reference_synth;
  for (Isa isa : all_isas()) {
    const std::string name(isa_name(isa));
    SCOPED_TRACE(name);
    ASSERT_EQ(setenv("FP4KIT_ISA", name.c_str(), 1), 0);
    const auto dq = testing::run_fp4kit("dequant " + model + " " + dir + "/dq-" + name);
    const auto sy = testing::run_fp4kit("synth tiny " + dir + "/synth-" + name + " --seed 3");
    unsetenv("FP4KIT_ISA");
    ASSERT_EQ(dq.exit_code, 0) << dq.output;
    ASSERT_EQ(sy.exit_code, 0) << sy.output;
    const auto dq_files = files_of(dir + "/dq-" + name), sy_files = files_of(dir + "/synth-" + name);
    ASSERT_FALSE(dq_files.empty());
    ASSERT_FALSE(sy_files.empty());
    if (isa == Isa::Scalar) {
      reference_dequant = dq_files;
      reference_synth = sy_files;
      continue;
    }
    EXPECT_TRUE(dq_files == reference_dequant) << "dequant output differs from the scalar run's";
    EXPECT_TRUE(sy_files == reference_synth) << "synth output differs from the scalar run's";
  }
}

TEST(Isa, VersionNamesTheIsaAndAnUnusableChoiceIsSaid) {
  const auto plain = testing::run_fp4kit("--version");
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_NE(plain.output.find("CPU fast paths: " + std::string(isa_name(preferred_isa()))), std::string::npos)
      << plain.output;
  ASSERT_EQ(setenv("FP4KIT_ISA", "avx9000", 1), 0);
  const auto bogus = testing::run_fp4kit("--version");
  ASSERT_EQ(setenv("FP4KIT_ISA", "scalar", 1), 0);
  const auto scalar = testing::run_fp4kit("--version");
  unsetenv("FP4KIT_ISA");
  EXPECT_EQ(bogus.exit_code, 0) << bogus.output;
  EXPECT_NE(bogus.output.find("warning: FP4KIT_ISA=avx9000 is not an ISA name"), std::string::npos) << bogus.output;
  EXPECT_EQ(scalar.output.find("warning"), std::string::npos) << scalar.output;
  EXPECT_NE(scalar.output.find("CPU fast paths: scalar"), std::string::npos) << scalar.output;
}

}  // namespace
}  // namespace fp4kit
