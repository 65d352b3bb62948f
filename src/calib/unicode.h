#pragma once
// The Unicode facts the tokenizer's pre-tokenizer needs: the general-category classes that the regexes
// of byte-level BPE tokenizers test (\p{L} \p{M} \p{N} \p{P} \p{S}), \s, and UTF-8 decoding. The
// classes are those of Oniguruma, the regex engine of Hugging Face `tokenizers`, so that pieces split
// exactly where the reference splits them.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fp4kit::calib {

enum class CharClass : uint8_t { Other = 0, Letter = 1, Mark = 2, Number = 3, Punctuation = 4, Symbol = 5 };

CharClass char_class(char32_t cp);
bool is_letter(char32_t cp);
bool is_mark(char32_t cp);
bool is_number(char32_t cp);
bool is_punct_or_symbol(char32_t cp);
// \s: U+0009..U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
bool is_whitespace(char32_t cp);

// Decodes UTF-8 into code points. Returns the byte offset of the first invalid sequence (overlong
// forms, surrogates and values past U+10FFFF are invalid), or npos when the whole text is valid.
size_t decode_utf8(std::string_view text, std::u32string& out);
// Byte offset of the first invalid UTF-8 sequence, or npos.
size_t find_invalid_utf8(std::string_view text);
void append_utf8(std::string& out, char32_t cp);
std::string to_utf8(std::u32string_view text);

}  // namespace fp4kit::calib
