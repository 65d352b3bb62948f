// Unicode classes of the pre-tokenizer and UTF-8 decoding.
#include <random>

#include <gtest/gtest.h>

#include "calib/unicode.h"

namespace fp4kit::calib {
namespace {

TEST(Unicode, ClassesOfKnownCodePoints) {
  EXPECT_EQ(char_class(U'A'), CharClass::Letter);
  EXPECT_EQ(char_class(U'z'), CharClass::Letter);
  EXPECT_EQ(char_class(U'7'), CharClass::Number);
  EXPECT_EQ(char_class(U'!'), CharClass::Punctuation);
  EXPECT_EQ(char_class(U'$'), CharClass::Symbol);
  EXPECT_EQ(char_class(U'+'), CharClass::Symbol);
  EXPECT_EQ(char_class(U' '), CharClass::Other);
  EXPECT_EQ(char_class(0x0000), CharClass::Other);
  EXPECT_EQ(char_class(0x00E9), CharClass::Letter);      // é
  EXPECT_EQ(char_class(0x0301), CharClass::Mark);        // combining acute
  EXPECT_EQ(char_class(0x00B2), CharClass::Number);      // superscript two (No)
  EXPECT_EQ(char_class(0x216B), CharClass::Number);      // roman numeral twelve (Nl)
  EXPECT_EQ(char_class(0x4E2D), CharClass::Letter);      // 中
  EXPECT_EQ(char_class(0x3002), CharClass::Punctuation); // 。
  EXPECT_EQ(char_class(0x1F600), CharClass::Symbol);     // 😀
  EXPECT_EQ(char_class(0x1D518), CharClass::Letter);     // 𝔘
  EXPECT_EQ(char_class(0x200D), CharClass::Other);       // zero-width joiner (Cf)
  EXPECT_EQ(char_class(0xE000), CharClass::Other);       // private use
  EXPECT_EQ(char_class(0x10FFFF), CharClass::Other);
  EXPECT_EQ(char_class(0x110000), CharClass::Other);
}

TEST(Unicode, WhitespaceIsExactlyTheRegexSet) {
  const std::vector<char32_t> expected = {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2001,
                                          0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A,
                                          0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
  std::vector<char32_t> found;
  for (char32_t cp = 0; cp < 0x110000; ++cp)
    if (is_whitespace(cp)) found.push_back(cp);
  EXPECT_EQ(found, expected);
}

TEST(Unicode, Utf8DecodingRejectsInvalidSequences) {
  std::u32string out;
  EXPECT_EQ(decode_utf8("a\xC3\xA9\xF0\x9F\x98\x80", out), std::string_view::npos);
  EXPECT_EQ(out, (std::u32string{U'a', 0xE9, 0x1F600}));
  EXPECT_EQ(decode_utf8("ab\xC0\xAF", out), 2u);          // overlong '/'
  EXPECT_EQ(decode_utf8("\xED\xA0\x80", out), 0u);        // surrogate
  EXPECT_EQ(decode_utf8("x\xF4\x90\x80\x80", out), 1u);   // past U+10FFFF
  EXPECT_EQ(decode_utf8("xyz\xE4\xB8", out), 3u);         // truncated
  EXPECT_EQ(decode_utf8("\x80", out), 0u);                // lone continuation byte
  EXPECT_EQ(decode_utf8("\xC3(", out), 0u);               // missing continuation
}

TEST(Unicode, Utf8RoundTripOfRandomCodePoints) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 2000; ++trial) {
    std::u32string text;
    for (int k = 0; k < 8; ++k) {
      char32_t cp = static_cast<char32_t>(rng() % 0x110000);
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0x41;
      text.push_back(cp);
    }
    std::u32string back;
    ASSERT_EQ(decode_utf8(to_utf8(text), back), std::string_view::npos);
    ASSERT_EQ(back, text);
  }
}

}  // namespace
}  // namespace fp4kit::calib
