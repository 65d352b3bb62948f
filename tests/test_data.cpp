#include "test_data.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>
#include <vector>

namespace fp4kit::testing {

std::string test_data(const std::string& relative) {
  return std::string(FP4KIT_TEST_DATA_DIR) + "/" + relative;
}

// FP4KIT_BINARY in the environment names another build of the CLI (a copy kept aside while the
// build directory is rebuilt from another tree).
std::string fp4kit_binary() {
  const char* other = std::getenv("FP4KIT_BINARY");
  return other != nullptr && *other != '\0' ? other : FP4KIT_BINARY;
}

namespace {

namespace fs = std::filesystem;

bool keep_dirs() { return std::getenv("FP4KIT_KEEP_TEST_DIRS") != nullptr; }

// The temporary directories made so far: the running test's, and those that live as long as the
// process (made outside a test, as a suite's set-up does, or shared by later tests as caches are).
struct TempDirs {
  std::mutex mu;
  std::vector<std::string> test, process;
  ~TempDirs() {
    if (keep_dirs()) return;
    std::error_code ec;
    for (const std::string& d : process) fs::remove_all(d, ec);
  }
};
TempDirs& temp_dirs() {
  static TempDirs dirs;
  return dirs;
}

// When a test ends, its directories go; a failed test's stay for a look, with their paths printed.
class RemoveTestDirs : public ::testing::EmptyTestEventListener {
  void OnTestEnd(const ::testing::TestInfo& info) override {
    std::vector<std::string> dirs;
    {
      std::lock_guard lock(temp_dirs().mu);
      dirs.swap(temp_dirs().test);
    }
    const bool keep = info.result()->Failed() || keep_dirs();
    std::error_code ec;
    for (const std::string& d : dirs) {
      if (keep) std::printf("test directory kept: %s\n", d.c_str());
      else fs::remove_all(d, ec);
    }
  }
};
[[maybe_unused]] const bool kRemoveTestDirs =
    (::testing::UnitTest::GetInstance()->listeners().Append(new RemoveTestDirs), true);

std::string make_temp_dir(const std::string& tag, bool for_the_process) {
  std::random_device rd;
  const fs::path dir = fs::temp_directory_path() / ("fp4kit-test-" + tag + "-" + std::to_string(rd()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const bool in_a_test = ::testing::UnitTest::GetInstance()->current_test_info() != nullptr;
  std::lock_guard lock(temp_dirs().mu);
  (for_the_process || !in_a_test ? temp_dirs().process : temp_dirs().test).push_back(dir.string());
  return dir.string();
}

}  // namespace

std::string fresh_temp_dir(const std::string& tag) { return make_temp_dir(tag, false); }

std::string shared_temp_dir(const std::string& tag) { return make_temp_dir(tag, true); }

}  // namespace fp4kit::testing
