#pragma once
// Pre-tokenization of byte-level BPE tokenizers (Hugging Face tokenizer.json): the text is cut into
// pieces by regex Splits and the ByteLevel step, then every piece's UTF-8 bytes are mapped to the
// printable characters BPE vocabularies are written in. std::regex has no \p{L}, so each regex we
// support is a hand-coded scanner over code points that gives the match the regex engine (leftmost
// match, alternatives tried in order, greedy with backtracking) would give.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fp4kit::calib {

// The regexes with a scanner. Any other regex in a tokenizer.json is refused by name.
enum class SplitRegex {
  DeepSeekDigits,  // \p{N}{1,3}
  DeepSeekCjk,     // [一-龥぀-ゟ゠-ヿ]+  (U+4E00..U+9FA5, U+3040..U+309F, U+30A0..U+30FF)
  DeepSeekWords,   // [ascii punct][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ | ?[\p{P}\p{S}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
  Gpt2,            // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+  (ByteLevel's own regex)
};

// The scanner for a regex source text as tokenizer.json spells it (CR and LF written either as the
// characters themselves or as the escapes \r \n), or nullopt.
std::optional<SplitRegex> recognize_split_regex(std::string_view regex);
const char* split_regex_name(SplitRegex regex);

// Length in code points of the match of `regex` that starts exactly at text[pos]; 0 for none.
size_t match_length(SplitRegex regex, std::u32string_view text, size_t pos);

// Split with behavior "Isolated": every match and every run of text between matches becomes a piece,
// in order, none empty.
void split_isolated(SplitRegex regex, std::u32string_view text, std::vector<std::u32string>& pieces);

// The ByteLevel alphabet: byte b is written as the code point byte_to_char(b) (printable bytes as
// themselves, the others as U+0100 + n in byte order).
char32_t byte_to_char(uint8_t b);
// The byte a ByteLevel character stands for, or -1 for a character outside the alphabet.
int char_to_byte(char32_t c);

// One step of a pre_tokenizer Sequence.
struct PreTokenizerStep {
  enum class Kind { Split, ByteLevel } kind = Kind::Split;
  SplitRegex regex = SplitRegex::Gpt2;  // Split: its regex; ByteLevel: used when use_regex
  bool add_prefix_space = false;        // ByteLevel
  bool use_regex = false;               // ByteLevel
};

// A whole pre-tokenizer: Splits, then exactly one ByteLevel as the last step.
class PreTokenizer {
 public:
  PreTokenizer() = default;
  explicit PreTokenizer(std::vector<PreTokenizerStep> steps) : steps_(std::move(steps)) {}
  // Pieces of `text` (code points), each as the UTF-8 bytes it stands for (before the ByteLevel map).
  void run(std::u32string_view text, std::vector<std::string>& byte_pieces) const;

 private:
  std::vector<PreTokenizerStep> steps_;
};

// The ByteLevel form of raw bytes, as vocabularies spell tokens.
std::string byte_level_encode(std::string_view bytes);

}  // namespace fp4kit::calib
