#include "calib/unicode.h"

#include <algorithm>
#include <array>

#include "calib/unicode_tables.h"

namespace fp4kit::calib {

namespace {

CharClass lookup_class(char32_t cp) {
  using unicode_tables::kClassRunCount;
  using unicode_tables::kClassRuns;
  const uint32_t key = (static_cast<uint32_t>(cp) << 3) | 7u;  // past every run starting at cp
  const uint32_t* end = kClassRuns + kClassRunCount;
  const uint32_t* it = std::upper_bound(kClassRuns, end, key);
  if (it == kClassRuns) return CharClass::Other;
  return static_cast<CharClass>(*(it - 1) & 7u);
}

// ASCII is most of every corpus: answer it from a table built once from the runs.
const std::array<CharClass, 128>& ascii_classes() {
  static const std::array<CharClass, 128> table = [] {
    std::array<CharClass, 128> t{};
    for (char32_t c = 0; c < 128; ++c) t[c] = lookup_class(c);
    return t;
  }();
  return table;
}

}  // namespace

CharClass char_class(char32_t cp) {
  if (cp < 128) return ascii_classes()[cp];
  if (cp > 0x10FFFF) return CharClass::Other;
  return lookup_class(cp);
}

bool is_letter(char32_t cp) { return char_class(cp) == CharClass::Letter; }
bool is_mark(char32_t cp) { return char_class(cp) == CharClass::Mark; }
bool is_number(char32_t cp) { return char_class(cp) == CharClass::Number; }
bool is_punct_or_symbol(char32_t cp) {
  const CharClass c = char_class(cp);
  return c == CharClass::Punctuation || c == CharClass::Symbol;
}

bool is_whitespace(char32_t cp) {
  if (cp < 128) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  using unicode_tables::kWhitespace;
  using unicode_tables::kWhitespaceCount;
  return std::binary_search(kWhitespace, kWhitespace + kWhitespaceCount, static_cast<uint32_t>(cp));
}

size_t decode_utf8(std::string_view text, std::u32string& out) {
  out.clear();
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char b = s[i];
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    size_t len;
    char32_t cp;
    char32_t min;
    if ((b & 0xE0) == 0xC0) len = 2, cp = b & 0x1F, min = 0x80;
    else if ((b & 0xF0) == 0xE0) len = 3, cp = b & 0x0F, min = 0x800;
    else if ((b & 0xF8) == 0xF0) len = 4, cp = b & 0x07, min = 0x10000;
    else return i;
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    out.push_back(cp);
    i += len;
  }
  return std::string_view::npos;
}

size_t find_invalid_utf8(std::string_view text) {
  std::u32string scratch;
  return decode_utf8(text, scratch);
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string to_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_utf8(out, cp);
  return out;
}

}  // namespace fp4kit::calib
