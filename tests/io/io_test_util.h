#pragma once
// Helpers for tests/io: building safetensors bytes by hand (valid or broken) and checking errors.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "base/error.h"

namespace fp4kit::io::testing {

inline std::vector<std::byte> to_bytes(std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

// 8-byte little-endian `header_length` (the real length unless given), the header, `data_bytes` bytes
// of data (0, 1, 2, ... mod 251, so that misplaced reads show).
inline std::vector<std::byte> safetensors_bytes(std::string_view header, size_t data_bytes = 0,
                                                std::optional<uint64_t> header_length = std::nullopt) {
  const uint64_t n = header_length.value_or(header.size());
  std::vector<std::byte> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((n >> (8 * i)) & 0xFF));
  const auto h = to_bytes(header);
  out.insert(out.end(), h.begin(), h.end());
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<std::byte>(i % 251));
  return out;
}

inline void write_bytes(const std::string& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::vector<std::byte> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto* p = reinterpret_cast<const std::byte*>(chars.data());
  return {p, p + chars.size()};
}

// Runs `f`, which must throw exactly `ErrorType`; the message must be one line holding every needle.
template <class ErrorType = InputError, class F>
void expect_error(F&& f, std::initializer_list<std::string_view> needles) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning " << *needles.begin();
  } catch (const ErrorType& e) {
    const std::string message = e.what();
    if constexpr (std::is_same_v<ErrorType, Error>) {
      EXPECT_EQ(dynamic_cast<const InputError*>(&e), nullptr) << "InputError where Error was expected: " << message;
    }
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
    for (std::string_view needle : needles) {
      EXPECT_NE(message.find(needle), std::string::npos) << "'" << needle << "' missing from: " << message;
    }
  }
}

}  // namespace fp4kit::io::testing
