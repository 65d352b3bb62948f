#include "test_data.h"

#include <cstdlib>
#include <filesystem>
#include <random>

namespace fp4kit::testing {

std::string test_data(const std::string& relative) {
  return std::string(FP4KIT_TEST_DATA_DIR) + "/" + relative;
}

std::string fp4kit_binary() { return FP4KIT_BINARY; }

std::string fresh_temp_dir(const std::string& tag) {
  namespace fs = std::filesystem;
  std::random_device rd;
  fs::path dir = fs::temp_directory_path() / ("fp4kit-test-" + tag + "-" + std::to_string(rd()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

}  // namespace fp4kit::testing
