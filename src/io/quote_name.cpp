#include "io/quote_name.h"

namespace fp4kit::io {

std::string quote_name(std::string_view name) {
  constexpr size_t kMaxShown = 200;
  bool cut = false;
  if (name.size() > kMaxShown) {
    size_t n = kMaxShown;
    while (n > 0 && (static_cast<unsigned char>(name[n]) & 0xC0) == 0x80) --n;  // keep UTF-8 whole
    name = name.substr(0, n);
    cut = true;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xF];
    } else if (c == '\\') {
      out += "\\\\";
    } else {
      out += c;
    }
  }
  out += cut ? "...'" : "'";
  return out;
}

}  // namespace fp4kit::io
