#pragma once
// FNV-1a, 64 bits, over typed fields: a fingerprint to notice a changed header, file or layout
// between a run and its --resume, not a defence against forgery.
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fp4kit {

class Fingerprint {
 public:
  void add(std::string_view s) {
    for (char c : s) mix(static_cast<uint8_t>(c));
    mix(0xFF);  // field separator: no UTF-8 string holds this byte
  }
  void add(uint64_t v) {
    for (int i = 0; i < 8; ++i) mix(static_cast<uint8_t>(v >> (8 * i)));
  }
  void add_shape(const std::vector<int64_t>& shape) {
    add(static_cast<uint64_t>(shape.size()));
    for (int64_t d : shape) add(static_cast<uint64_t>(d));
  }
  void add_bytes(std::span<const std::byte> bytes) {
    add(static_cast<uint64_t>(bytes.size()));
    for (std::byte b : bytes) mix(static_cast<uint8_t>(b));
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  void mix(uint8_t b) { h_ = (h_ ^ b) * 0x100000001b3ULL; }
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

}  // namespace fp4kit
