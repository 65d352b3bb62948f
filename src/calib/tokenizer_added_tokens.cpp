#include "calib/tokenizer_added_tokens.h"

#include "calib/unicode.h"

namespace fp4kit::calib {

namespace {

// Whitespace (White_Space, as Rust's char::is_whitespace) before `end` / from `begin`, in bytes.
size_t whitespace_before(std::string_view text, size_t floor, size_t end) {
  size_t start = end;
  while (start > floor) {
    size_t k = start - 1;
    while (k > floor && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
    std::u32string cp;
    if (decode_utf8(text.substr(k, start - k), cp) != std::string_view::npos || cp.size() != 1 || !is_whitespace(cp[0]))
      break;
    start = k;
  }
  return end - start;
}

size_t whitespace_after(std::string_view text, size_t begin) {
  size_t end = begin;
  while (end < text.size()) {
    const unsigned char b = static_cast<unsigned char>(text[end]);
    const size_t len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : 4;
    std::u32string cp;
    if (end + len > text.size() || decode_utf8(text.substr(end, len), cp) != std::string_view::npos ||
        !is_whitespace(cp[0]))
      break;
    end += len;
  }
  return end - begin;
}

}  // namespace

void AddedTokenMatcher::Trie::insert(std::string_view key, int32_t token) {
  int32_t node = 0;
  for (char c : key) {
    const unsigned char b = static_cast<unsigned char>(c);
    int32_t child = -1;
    for (const auto& [byte, index] : nodes[node].children)
      if (byte == b) child = index;
    if (child < 0) {
      child = static_cast<int32_t>(nodes.size());
      nodes[node].children.emplace_back(b, child);
      nodes.emplace_back();
    }
    node = child;
  }
  if (nodes[node].token < 0) nodes[node].token = token;  // the first of two equal contents wins
}

int32_t AddedTokenMatcher::Trie::longest_at(std::string_view text, size_t pos, size_t& length) const {
  int32_t node = 0;
  int32_t best = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    const unsigned char b = static_cast<unsigned char>(text[i]);
    int32_t child = -1;
    for (const auto& [byte, index] : nodes[node].children)
      if (byte == b) child = index;
    if (child < 0) break;
    node = child;
    if (nodes[node].token >= 0) {
      best = nodes[node].token;
      length = i + 1 - pos;
    }
  }
  return best;
}

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens) : tokens_(tokens) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i].content.empty()) continue;
    (tokens_[i].normalized ? normalized_ : raw_).insert(tokens_[i].content, static_cast<int32_t>(i));
    any_ = true;
  }
}

void AddedTokenMatcher::split_with(const Trie& trie, std::string_view text, std::vector<TextSegment>& out) const {
  size_t emitted = 0;  // text before this is in `out`
  size_t pos = 0;
  while (pos < text.size()) {
    size_t length = 0;
    const int32_t token = trie.longest_at(text, pos, length);
    if (token < 0) {
      ++pos;
      continue;
    }
    const AddedToken& t = tokens_[token];
    size_t start = pos;
    size_t stop = pos + length;
    if (t.lstrip) start -= whitespace_before(text, emitted, start);
    if (t.rstrip) stop += whitespace_after(text, stop);
    if (emitted < start) out.push_back({text.substr(emitted, start - emitted), -1});
    out.push_back({text.substr(start, stop - start), t.id});
    emitted = stop;
    pos = stop;
  }
  if (emitted < text.size()) out.push_back({text.substr(emitted), -1});
}

std::vector<TextSegment> AddedTokenMatcher::split(std::string_view text) const {
  std::vector<TextSegment> out;
  if (!any_) {
    if (!text.empty()) out.push_back({text, -1});
    return out;
  }
  std::vector<TextSegment> first;
  split_with(raw_, text, first);
  for (const TextSegment& s : first) {
    if (s.id >= 0) out.push_back(s);
    else split_with(normalized_, s.text, out);
  }
  return out;
}

}  // namespace fp4kit::calib
