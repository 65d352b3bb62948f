#pragma once
// Generated tables behind calib/unicode.h (see unicode_tables.cpp for their origin).
#include <cstddef>
#include <cstdint>

namespace fp4kit::calib::unicode_tables {

// Runs of code points with one class: entry = first code point << 3 | class (0 other, 1 letter,
// 2 mark, 3 number, 4 punctuation, 5 symbol); a run lasts up to the next entry's first code point.
extern const uint32_t kClassRuns[];
extern const size_t kClassRunCount;
// The code points \s matches, ascending.
extern const uint32_t kWhitespace[];
extern const size_t kWhitespaceCount;

}  // namespace fp4kit::calib::unicode_tables
