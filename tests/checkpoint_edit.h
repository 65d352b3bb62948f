#pragma once
// Copies of the tiny checkpoint with one thing broken, for tests of what reads checkpoints.
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "io/tensor_info.h"

namespace fp4kit::testing {

// Copies tests/data/dsv4-tiny (config, index, shards) into a fresh directory and returns it.
std::string copy_tiny_checkpoint(const std::string& tag);

// Rewrites one shard: `edit` may change a tensor's name/dtype/shape (its bytes are kept, so the
// caller keeps sizes consistent) or return false to drop it. The index is not touched.
void rewrite_shard(const std::string& shard_path, const std::function<bool(io::TensorInfo&)>& edit);

// Replaces `from` with `to` (same length) inside the shard's JSON header, leaving the data alone.
void patch_header(const std::string& shard_path, const std::string& from, const std::string& to);

// Puts tensor `name` (dtype, shape, bytes) into the shard of `dir` that holds tensor `beside`,
// replacing a tensor of that name there, and lists it in the index.
void put_tensor(const std::string& dir, const std::string& beside, const std::string& name, DType dtype,
                const std::vector<int64_t>& shape, std::span<const std::byte> bytes);

// Renames tensor `from` to `to` in its shard and in the index.
void rename_tensor(const std::string& dir, const std::string& from, const std::string& to);

// The shard of the tiny checkpoint that holds `tensor` (per its index), as a path inside `dir`.
std::string shard_holding(const std::string& dir, const std::string& tensor);

}  // namespace fp4kit::testing
