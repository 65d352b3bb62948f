#pragma once
// The BPE model of a byte-level tokenizer.json: vocabulary, merges by rank, and the merge of one
// pre-tokenized piece into token ids, lowest-rank pair first (ties: leftmost), with a cache.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace fp4kit::calib {

struct BpeOptions {
  bool ignore_merges = false;  // a piece that is itself a vocabulary entry becomes that token
  int32_t unk_id = -1;         // id for a byte missing from the vocabulary; -1: the byte is dropped
};

class BpeModel {
 public:
  // `merges` as pairs of token strings, rank = position. InputError (with `label`) for a merge
  // whose parts or result are not in the vocabulary.
  BpeModel(std::unordered_map<std::string, int32_t> vocab, const std::vector<std::pair<std::string, std::string>>& merges,
           BpeOptions options, const std::string& label);

  // Appends the ids of one piece, given as the raw bytes it stands for.
  void encode_piece(std::string_view bytes, std::vector<int32_t>& ids) const;
  // The same without the cache: the reference the cached path is tested against.
  void encode_piece_uncached(std::string_view bytes, std::vector<int32_t>& ids) const;

  const std::unordered_map<std::string, int32_t>& vocab() const { return vocab_; }
  size_t merge_count() const { return merges_.size(); }

 private:
  struct Merge {
    uint32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t byte_ids_[256];
  BpeOptions options_;

  // Pieces repeat (words): remember short ones. Bounded; cleared when full.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace fp4kit::calib
