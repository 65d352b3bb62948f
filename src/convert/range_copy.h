#pragma once
// Copies a byte range of one file into another without passing it through a user-space buffer on
// the way in: copy_file_range(2) moves the pages inside the kernel. On a bare write(2) from a
// buffer, ext4 spends ~5x the CPU of copy_file_range for the same bytes (bench/RESULTS.md), and kept
// tensors are about half of a V4 checkpoint. The shard's XXH3 still sees every byte copied, in
// order: each piece is read back from the page cache (the source's pages the copy just read) into
// one reused buffer, which costs far less than the write it replaces.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "convert/shard_hash.h"
#include "io/safetensors_writer.h"

namespace fp4kit {

struct RangeCopy {
  int src_fd = -1;
  uint64_t src_offset = 0;
  int dst_fd = -1;
  uint64_t dst_offset = 0;
  uint64_t bytes = 0;
};

// copy_file_range piece by piece, each piece then hashed from the source; where the kernel cannot
// copy between these files (EXDEV, EINVAL, ENOSYS, EOPNOTSUPP: other file systems, old kernels)
// the rest goes through copy_range_ref. `buffer` is reused between calls. Error (naming
// `dst_label`) on a failed read or write (ENOSPC, EFBIG, EIO). Returns false if it fell back.
bool copy_range(const RangeCopy& c, ShardHasher* hasher, std::vector<std::byte>& buffer, const std::string& dst_label);

// The plain path: pread into `buffer`, pwrite, hash. Same bytes, same hash.
void copy_range_ref(const RangeCopy& c, ShardHasher* hasher, std::vector<std::byte>& buffer,
                    const std::string& dst_label);

// A second descriptor on the temporary file a begun io::SafetensorsWriter writes, opened for
// writing at explicit offsets, with the offset of its data section. nullopt if it cannot be
// opened: the caller then copies through the writer.
struct OpenTempShard {
  int fd = -1;
  uint64_t data_offset = 0;
};
std::optional<OpenTempShard> open_temp_shard(const io::SafetensorsWriter& writer);

}  // namespace fp4kit
