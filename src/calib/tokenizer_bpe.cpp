#include "calib/tokenizer_bpe.h"

#include <queue>

#include "base/error.h"
#include "calib/tokenizer_pretokenizer.h"
#include "calib/unicode.h"

namespace fp4kit::calib {

namespace {
constexpr size_t kCacheMaxEntries = 1 << 16;
constexpr size_t kCacheMaxPieceBytes = 256;

std::string quoted_pair(const std::string& a, const std::string& b) {
  std::string s = "'";
  s += a;
  s += ' ';
  s += b;
  s += '\'';
  return s;
}
}  // namespace

BpeModel::BpeModel(std::unordered_map<std::string, int32_t> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
                   const std::string& label)
    : vocab_(std::move(vocab)), options_(options) {
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    append_utf8(ch, byte_to_char(static_cast<uint8_t>(b)));
    auto it = vocab_.find(ch);
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = vocab_.find(a);
    auto ib = vocab_.find(b);
    auto ic = vocab_.find(a + b);
    const char* missing = ia == vocab_.end() ? "its first part" : ib == vocab_.end() ? "its second part"
                          : ic == vocab_.end()                  ? "the merged token"
                                                                : nullptr;
    if (missing)
      throw InputError(label + ": model.merges[" + std::to_string(rank) + "] " + quoted_pair(a, b) + ": " + missing +
                       " is not in model.vocab");
    // A pair listed twice keeps its first (lowest) rank.
    merges_.emplace(pair_key(ia->second, ib->second), Merge{static_cast<uint32_t>(rank), ic->second});
  }
}

void BpeModel::encode_piece(std::string_view bytes, std::vector<int32_t>& ids) const {
  if (bytes.size() > kCacheMaxPieceBytes) return encode_piece_uncached(bytes, ids);
  {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(std::string(bytes)); it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> piece_ids;
  encode_piece_uncached(bytes, piece_ids);
  ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
  std::lock_guard lock(cache_mutex_);
  if (cache_.size() >= kCacheMaxEntries) cache_.clear();
  cache_.emplace(std::string(bytes), std::move(piece_ids));
}

void BpeModel::encode_piece_uncached(std::string_view bytes, std::vector<int32_t>& ids) const {
  if (bytes.empty()) return;
  if (options_.ignore_merges) {
    if (auto it = vocab_.find(byte_level_encode(bytes)); it != vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  // Symbols as a doubly linked list over the piece's bytes; a merged symbol takes its right
  // neighbour's place out of the list.
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(bytes.size());
  for (char c : bytes) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
    if (id < 0 && options_.unk_id < 0) continue;  // no token for this byte and no unk: dropped
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id < 0 ? options_.unk_id : id, index - 1, index + 1, true});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push_pair = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    if (auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id)); it != merges_.end())
      queue.push({it->second.rank, left, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Stale entry: one side has been merged into something else since it was queued.
    auto it = merges_.find(pair_key(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

}  // namespace fp4kit::calib
