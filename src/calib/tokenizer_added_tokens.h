#pragma once
// Added tokens (special tokens such as <｜begin▁of▁sentence｜>, and others) are found in the text before
// BPE, as Hugging Face `tokenizers` finds them: leftmost match, longest token at that position; first
// the tokens with normalized=false, then those with normalized=true in the text between. lstrip/rstrip
// make a token swallow the whitespace before/after it.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fp4kit::calib {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// A piece of text: either an added token (id >= 0) or plain text for the pre-tokenizer (id < 0).
struct TextSegment {
  std::string_view text;
  int32_t id = -1;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens);
  // Splits `text` (valid UTF-8) into segments; empty text segments are left out.
  std::vector<TextSegment> split(std::string_view text) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // byte -> node index
    int32_t token = -1;                                       // index into tokens_
  };
  struct Trie {
    std::vector<Node> nodes{Node{}};
    void insert(std::string_view key, int32_t token);
    // The longest token starting at text[pos], or -1.
    int32_t longest_at(std::string_view text, size_t pos, size_t& length) const;
  };
  void split_with(const Trie& trie, std::string_view text, std::vector<TextSegment>& out) const;

  std::vector<AddedToken> tokens_;
  Trie raw_;         // normalized = false
  Trie normalized_;  // normalized = true
  bool any_ = false;
};

}  // namespace fp4kit::calib
