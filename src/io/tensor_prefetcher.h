#pragma once
// Reads groups of tensors (a model's layers, in the order a pass uses them) into host memory ahead
// of their use, so that reading the next layer overlaps computing this one. One reader thread and
// `depth` slots: the group in use and the ones read ahead, so memory is bounded by depth × the
// largest group whatever the size of the model. The tensors of a group that lie close together in a
// shard are read as one span; where the file system allows O_DIRECT, each span goes by aligned reads
// straight into the slot (no page cache, no bounce copy), else by ordinary reads (same bytes).
// Slot memory comes from a HostAllocator: aligned heap memory by default, pinned memory when the
// groups go on to a GPU.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "io/checkpoint_index.h"
#include "io/tensor_info.h"

namespace fp4kit::io {

// Memory for the slots: allocate(bytes) returns a block of at least `bytes` bytes aligned to
// kDirectAlignment (4096); release gives it back.
struct HostAllocator {
  std::function<std::byte*(size_t bytes)> allocate;
  std::function<void(std::byte*)> release;
};
HostAllocator aligned_host_allocator();

struct TensorGroup {
  std::string label;                 // for messages and progress, e.g. "layer 3"
  std::vector<std::string> tensors;  // checkpoint tensor names
};

struct PrefetchedTensor {
  const TensorInfo* info = nullptr;  // owned by the checkpoint's shard
  std::span<const std::byte> bytes;  // inside the group's slot
};

struct PrefetchOptions {
  size_t depth = 2;                     // slots (>= 1); 2 = double buffering
  bool direct = true;                   // O_DIRECT where the file system allows it
  uint64_t merge_gap = uint64_t{1} << 20;  // tensors at most this far apart are read as one span
  HostAllocator allocator = aligned_host_allocator();
};

struct PrefetchStats {
  uint64_t bytes_read = 0;   // file bytes read (spans, with alignment and merge gaps)
  uint64_t tensor_bytes = 0; // the groups' tensor bytes
  double read_seconds = 0;   // time the reader spent in reads
  size_t groups_read = 0;
  size_t direct_spans = 0, buffered_spans = 0;
  size_t peak_slot_bytes = 0;  // the most slot memory held at once
};

namespace detail {
struct PrefetchState;
}

// One group, read; its slot goes back to the reader when the last handle is dropped.
class PrefetchedGroup {
 public:
  const std::string& label() const;
  size_t index() const { return index_; }
  const std::vector<PrefetchedTensor>& tensors() const;  // in the group's order
  // InputError naming the group if it has no tensor `name`.
  const PrefetchedTensor& at(std::string_view name) const;

 private:
  friend class TensorPrefetcher;
  PrefetchedGroup(std::shared_ptr<detail::PrefetchState> state, size_t slot, size_t index);
  std::shared_ptr<void> release_;  // returns the slot when the last copy is dropped
  std::shared_ptr<detail::PrefetchState> state_;
  size_t slot_ = 0, index_ = 0;
};

class TensorPrefetcher {
 public:
  // Every tensor of every group is looked up now (headers only): InputError naming the group and
  // the tensor if the checkpoint lacks one. Reading starts at once.
  TensorPrefetcher(const Checkpoint& checkpoint, std::vector<TensorGroup> groups, PrefetchOptions options = {});
  ~TensorPrefetcher();  // stops the reader; handles still held stay valid
  TensorPrefetcher(const TensorPrefetcher&) = delete;
  TensorPrefetcher& operator=(const TensorPrefetcher&) = delete;

  size_t groups() const;
  // The next group in order, once read (blocks); nullopt after the last. Rethrows the reader's
  // error (naming the file and the tensor) at the group it happened in.
  std::optional<PrefetchedGroup> next();
  PrefetchStats stats() const;

 private:
  std::shared_ptr<detail::PrefetchState> state_;
  std::thread reader_;
};

}  // namespace fp4kit::io
