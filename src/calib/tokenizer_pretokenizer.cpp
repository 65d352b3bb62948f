#include "calib/tokenizer_pretokenizer.h"

#include <array>

#include "calib/unicode.h"

namespace fp4kit::calib {

namespace {

// The regex sources as DeepSeek V3's tokenizer.json and GPT-2's ByteLevel spell them, with CR and LF
// as the characters themselves.
constexpr std::string_view kDeepSeekDigits = R"(\p{N}{1,3})";
constexpr std::string_view kDeepSeekCjk = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+";
constexpr std::string_view kDeepSeekWords =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
    "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\r\n]*"
    "|\\s*[\r\n]+"
    "|\\s+(?!\\S)"
    "|\\s+";
constexpr std::string_view kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

bool is_crlf(char32_t c) { return c == '\r' || c == '\n'; }
bool is_ascii_letter(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_ascii_punct(char32_t c) {
  return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}
bool is_letter_or_mark(char32_t c) {
  const CharClass k = char_class(c);
  return k == CharClass::Letter || k == CharClass::Mark;
}
bool is_cjk_or_kana(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x3040 && c <= 0x309F) || (c >= 0x30A0 && c <= 0x30FF);
}

template <typename Pred>
size_t run_length(std::u32string_view s, size_t pos, Pred pred) {
  size_t j = pos;
  while (j < s.size() && pred(s[j])) ++j;
  return j - pos;
}

// \s*[\r\n]+ | \s+(?!\S) | \s+ at pos, the tail both regexes share. The greedy \s* gives back
// characters until [\r\n]+ can match, so the first alternative ends right after the last CR/LF of
// the whitespace run; (?!\S) holds at the end of the text or before more whitespace, so the second
// takes the run, or the run less its last character when non-space follows.
size_t match_whitespace_tail(std::u32string_view s, size_t pos, bool with_crlf_alternative) {
  const size_t run = run_length(s, pos, is_whitespace);
  if (run == 0) return 0;
  if (with_crlf_alternative) {
    for (size_t k = run; k > 0; --k)
      if (is_crlf(s[pos + k - 1])) return k;
  }
  if (pos + run == s.size()) return run;
  if (run > 1) return run - 1;
  return run;  // \s+
}

size_t match_deepseek_words(std::u32string_view s, size_t pos) {
  const size_t n = s.size();
  const char32_t c = s[pos];
  // [ascii punct][A-Za-z]+
  if (is_ascii_punct(c) && pos + 1 < n && is_ascii_letter(s[pos + 1]))
    return 1 + run_length(s, pos + 1, is_ascii_letter);
  // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
  const CharClass k = char_class(c);
  const bool optional_ok = !is_crlf(c) && k != CharClass::Letter && k != CharClass::Punctuation && k != CharClass::Symbol;
  if (optional_ok && pos + 1 < n && is_letter_or_mark(s[pos + 1])) return 1 + run_length(s, pos + 1, is_letter_or_mark);
  if (is_letter_or_mark(c)) return run_length(s, pos, is_letter_or_mark);
  // ' '?[\p{P}\p{S}]+[\r\n]*
  size_t start = pos;
  if (c == ' ' && pos + 1 < n && is_punct_or_symbol(s[pos + 1])) start = pos + 1;
  if (is_punct_or_symbol(s[start])) {
    const size_t ps = run_length(s, start, is_punct_or_symbol);
    return (start - pos) + ps + run_length(s, start + ps, is_crlf);
  }
  return match_whitespace_tail(s, pos, true);
}

size_t match_gpt2(std::u32string_view s, size_t pos) {
  const size_t n = s.size();
  const char32_t c = s[pos];
  if (c == '\'' && pos + 1 < n) {
    const char32_t a = s[pos + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 < n) {
      const char32_t b = s[pos + 2];
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
  }
  const size_t start = (c == ' ' && pos + 1 < n) ? pos + 1 : pos;
  auto other = [](char32_t x) { return !is_whitespace(x) && !is_letter(x) && !is_number(x); };
  // ' '?\p{L}+, ' '?\p{N}+, ' '?[^\s\p{L}\p{N}]+: the optional space is taken when the class follows it,
  // otherwise the class must start at pos itself.
  for (int alternative = 0; alternative < 3; ++alternative) {
    auto in_class = [&](char32_t x) {
      return alternative == 0 ? is_letter(x) : alternative == 1 ? is_number(x) : other(x);
    };
    if (start != pos && in_class(s[start])) return 1 + run_length(s, start, in_class);
    if (in_class(c)) return run_length(s, pos, in_class);
  }
  return match_whitespace_tail(s, pos, false);
}

constexpr std::array<char32_t, 256> make_byte_chars() {
  std::array<char32_t, 256> t{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    t[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return t;
}
constexpr std::array<char32_t, 256> kByteChars = make_byte_chars();

}  // namespace

std::optional<SplitRegex> recognize_split_regex(std::string_view regex) {
  std::string canonical;
  canonical.reserve(regex.size());
  for (size_t i = 0; i < regex.size(); ++i) {
    // "\\r" and "\\n" mean the same to the regex engine as the characters; "\\\\" is an escaped backslash.
    if (regex[i] == '\\' && i + 1 < regex.size()) {
      const char e = regex[i + 1];
      if (e == 'r' || e == 'n') {
        canonical += e == 'r' ? '\r' : '\n';
        ++i;
        continue;
      }
      canonical += regex[i];
      canonical += e;
      ++i;
      continue;
    }
    canonical += regex[i];
  }
  if (canonical == kDeepSeekDigits) return SplitRegex::DeepSeekDigits;
  if (canonical == kDeepSeekCjk) return SplitRegex::DeepSeekCjk;
  if (canonical == kDeepSeekWords) return SplitRegex::DeepSeekWords;
  if (canonical == kGpt2) return SplitRegex::Gpt2;
  return std::nullopt;
}

const char* split_regex_name(SplitRegex regex) {
  switch (regex) {
    case SplitRegex::DeepSeekDigits: return "DeepSeek digits";
    case SplitRegex::DeepSeekCjk: return "DeepSeek CJK";
    case SplitRegex::DeepSeekWords: return "DeepSeek words";
    case SplitRegex::Gpt2: return "GPT-2";
  }
  return "?";
}

size_t match_length(SplitRegex regex, std::u32string_view text, size_t pos) {
  if (pos >= text.size()) return 0;
  switch (regex) {
    case SplitRegex::DeepSeekDigits: {
      size_t k = 0;
      while (k < 3 && pos + k < text.size() && is_number(text[pos + k])) ++k;
      return k;
    }
    case SplitRegex::DeepSeekCjk: return run_length(text, pos, is_cjk_or_kana);
    case SplitRegex::DeepSeekWords: return match_deepseek_words(text, pos);
    case SplitRegex::Gpt2: return match_gpt2(text, pos);
  }
  return 0;
}

void split_isolated(SplitRegex regex, std::u32string_view text, std::vector<std::u32string>& pieces) {
  size_t gap_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t len = match_length(regex, text, pos);
    if (len == 0) {
      ++pos;
      continue;
    }
    if (gap_start < pos) pieces.emplace_back(text.substr(gap_start, pos - gap_start));
    pieces.emplace_back(text.substr(pos, len));
    pos += len;
    gap_start = pos;
  }
  if (gap_start < text.size()) pieces.emplace_back(text.substr(gap_start));
}

char32_t byte_to_char(uint8_t b) { return kByteChars[b]; }

int char_to_byte(char32_t c) {
  static const std::array<int16_t, 324> inverse = [] {
    std::array<int16_t, 324> t{};
    t.fill(-1);
    for (int b = 0; b < 256; ++b) t[kByteChars[b]] = static_cast<int16_t>(b);
    return t;
  }();
  return c < inverse.size() ? inverse[c] : -1;
}

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char b : bytes) append_utf8(out, byte_to_char(static_cast<uint8_t>(b)));
  return out;
}

void PreTokenizer::run(std::u32string_view text, std::vector<std::string>& byte_pieces) const {
  std::vector<std::u32string> pieces{std::u32string(text)};
  std::vector<std::u32string> next;
  for (const PreTokenizerStep& step : steps_) {
    next.clear();
    for (std::u32string& piece : pieces) {
      if (step.kind == PreTokenizerStep::Kind::Split) {
        split_isolated(step.regex, piece, next);
        continue;
      }
      // ByteLevel: the prefix space goes on every piece that does not start with one.
      if (step.add_prefix_space && (piece.empty() || piece[0] != U' ')) piece.insert(piece.begin(), U' ');
      if (step.use_regex) split_isolated(step.regex, piece, next);
      else if (!piece.empty()) next.push_back(std::move(piece));
    }
    pieces.swap(next);
  }
  for (const std::u32string& piece : pieces)
    if (!piece.empty()) byte_pieces.push_back(to_utf8(piece));
}

}  // namespace fp4kit::calib
