#pragma once
// XXH3-64 of a shard's data section (every byte after the 8-byte length and the JSON header),
// recorded in the plan file when a shard is published and checked before --resume keeps it. The
// header itself is checked field by field (shard_is_finished). Hex, 16 lowercase digits.
#include <cstddef>
#include <memory>
#include <span>
#include <string>

namespace fp4kit {

// Streaming: the bytes of the data section in order.
class ShardHasher {
 public:
  ShardHasher();
  ~ShardHasher();
  ShardHasher(const ShardHasher&) = delete;
  ShardHasher& operator=(const ShardHasher&) = delete;
  void update(std::span<const std::byte> bytes);
  std::string hex() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Reads the shard's data section; Error if it cannot be read.
std::string shard_data_xxh3(const std::string& path);

}  // namespace fp4kit
