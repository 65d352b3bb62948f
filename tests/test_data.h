#pragma once
#include <string>

namespace fp4kit::testing {
// Absolute path of a file under tests/data/.
std::string test_data(const std::string& relative);
// Absolute path of the built fp4kit binary.
std::string fp4kit_binary();
// A fresh, empty directory for one test (removed by the OS's tmp cleaning, not by the test).
std::string fresh_temp_dir(const std::string& tag);
}  // namespace fp4kit::testing
