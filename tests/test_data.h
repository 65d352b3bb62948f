#pragma once
#include <string>

namespace fp4kit::testing {
// Absolute path of a file under tests/data/.
std::string test_data(const std::string& relative);
// Absolute path of the built fp4kit binary (FP4KIT_BINARY in the environment overrides it).
std::string fp4kit_binary();
// A fresh, empty directory for the running test, removed when it passes (kept, and its path printed,
// when it fails, or with FP4KIT_KEEP_TEST_DIRS set); made outside a test (a suite's set-up), it lives
// until the process ends.
std::string fresh_temp_dir(const std::string& tag);
// A fresh, empty directory that later tests may use too (a cache), removed when the process ends.
std::string shared_temp_dir(const std::string& tag);
}  // namespace fp4kit::testing
