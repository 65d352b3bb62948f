#include "io/tensor_prefetcher.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "base/error.h"
#include "io/direct_io.h"

namespace fp4kit::io {

HostAllocator aligned_host_allocator() {
  return {[](size_t bytes) {
            const size_t size = (std::max<size_t>(bytes, 1) + kDirectAlignment - 1) / kDirectAlignment * kDirectAlignment;
            void* p = std::aligned_alloc(kDirectAlignment, size);
            if (!p) throw Error("cannot allocate " + std::to_string(size) + " bytes of host memory for prefetched tensors");
            return static_cast<std::byte*>(p);
          },
          [](std::byte* p) { std::free(p); }};
}

namespace detail {

namespace {

// Where one tensor of a group is: its shard, and where its bytes land in the slot.
struct PlannedTensor {
  const SafetensorsFile* shard = nullptr;
  const TensorInfo* info = nullptr;
  size_t slot_offset = 0;
};

// One read: file bytes [file_begin, file_end) of a shard into the slot at slot_offset. slot_offset
// and file_begin are aligned, so that the same span can be read with O_DIRECT.
struct Span {
  const SafetensorsFile* shard = nullptr;
  uint64_t file_begin = 0, file_end = 0;  // aligned begin; end of the last tensor's bytes
  size_t slot_offset = 0;
  std::string first_tensor, last_tensor;  // for messages
};

struct GroupPlan {
  std::string label;
  std::vector<PlannedTensor> tensors;  // in the group's order
  std::vector<Span> spans;
  size_t slot_bytes = 0;
  uint64_t tensor_bytes = 0;
};

// Tensors sorted by (shard, offset); neighbours at most `gap` apart share a span.
GroupPlan plan_group(const Checkpoint& ckpt, const TensorGroup& group, uint64_t gap) {
  GroupPlan plan;
  plan.label = group.label;
  for (const std::string& name : group.tensors) {
    auto [shard, info] = ckpt.find(name);
    if (!shard)
      throw InputError(ckpt.dir() + ": " + group.label + " needs tensor '" + name + "', which the checkpoint does not have");
    plan.tensors.push_back({shard, info, 0});
    plan.tensor_bytes += info->nbytes();
  }
  std::vector<size_t> order(plan.tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto file_begin = [&](size_t i) { return plan.tensors[i].shard->header().data_offset + plan.tensors[i].info->begin; };
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto& pa = plan.tensors[a].shard->path();
    const auto& pb = plan.tensors[b].shard->path();
    return pa != pb ? pa < pb : file_begin(a) < file_begin(b);
  });
  size_t slot = 0;
  for (size_t at = 0; at < order.size();) {
    const size_t first = order[at];
    Span span;
    span.shard = plan.tensors[first].shard;
    span.file_begin = align_down(file_begin(first));
    span.file_end = file_begin(first) + plan.tensors[first].info->nbytes();
    span.slot_offset = slot;
    span.first_tensor = plan.tensors[first].info->name;
    size_t end = at;
    for (; end < order.size(); ++end) {
      const size_t i = order[end];
      const uint64_t b = file_begin(i);
      if (end > at && (plan.tensors[i].shard != span.shard || b > span.file_end + gap)) break;
      plan.tensors[i].slot_offset = span.slot_offset + static_cast<size_t>(b - span.file_begin);
      span.file_end = std::max(span.file_end, b + plan.tensors[i].info->nbytes());
      span.last_tensor = plan.tensors[i].info->name;
    }
    slot = span.slot_offset + static_cast<size_t>(align_up(span.file_end - span.file_begin));
    plan.spans.push_back(std::move(span));
    at = end;
  }
  plan.slot_bytes = std::max<size_t>(slot, kDirectAlignment);
  return plan;
}

}  // namespace

struct Slot {
  std::byte* data = nullptr;
  size_t capacity = 0;
  size_t group = 0;    // the group it holds, when filled or held
  bool filled = false; // read, not yet handed out
  bool held = false;   // handed out, not yet given back
};

struct PrefetchState {
  PrefetchOptions options;
  std::vector<GroupPlan> plans;
  std::vector<std::vector<PrefetchedTensor>> views;  // per group, valid while its slot is held

  std::mutex mu;
  std::condition_variable cv;
  std::vector<Slot> slots;
  size_t next_to_hand_out = 0;
  bool stop = false;
  std::exception_ptr error;  // the reader's, for group `error_group`
  size_t error_group = 0;
  PrefetchStats stats;
  size_t slot_bytes_now = 0;

  ~PrefetchState() {
    for (Slot& s : slots)
      if (s.data) options.allocator.release(s.data);
  }
};

namespace {

// The descriptors the reader uses, per shard: O_DIRECT where allowed, else an ordinary one.
class ShardFiles {
 public:
  explicit ShardFiles(bool direct) : direct_(direct) {}
  ~ShardFiles() {
    for (auto& [path, f] : files_) ::close(f.fd);
  }
  std::pair<int, bool> get(const std::string& path) {
    auto it = files_.find(path);
    if (it != files_.end()) return {it->second.fd, it->second.direct};
    int fd = direct_ ? open_direct_read(path) : -1;
    const bool direct = fd >= 0;
    if (!direct) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw InputError(path + ": cannot open for reading: " + std::strerror(errno));
    if (!direct) ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    files_[path] = {fd, direct};
    return {fd, direct};
  }

 private:
  struct File {
    int fd;
    bool direct;
  };
  bool direct_;
  std::map<std::string, File> files_;
};

// Reads `len` bytes at `offset` into dst; returns the bytes read (fewer only at the end of the file).
uint64_t read_fully(int fd, bool direct, std::byte* dst, uint64_t len, uint64_t offset, const std::string& path,
                    const Span& span) {
  uint64_t done = 0;
  while (done < len) {
    // Page-cache reads in 16 MiB pieces keep the kernel's read-ahead streaming; O_DIRECT ones go
    // to the device as they are.
    const size_t want = static_cast<size_t>(std::min<uint64_t>(len - done, direct ? uint64_t{1} << 30 : uint64_t{16} << 20));
    const ssize_t n = ::pread(fd, dst + done, want, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw InputError(path + ": cannot read tensors '" + span.first_tensor + "' .. '" + span.last_tensor +
                       "': " + std::strerror(errno));
    if (n == 0) break;
    done += static_cast<uint64_t>(n);
  }
  return done;
}

void read_span(ShardFiles& files, const Span& span, std::byte* slot, PrefetchStats& stats) {
  const std::string& path = span.shard->path();
  auto [fd, direct] = files.get(path);
  const uint64_t need = span.file_end - span.file_begin;
  // O_DIRECT reads whole aligned blocks (the last one may run past the file's end: the read is short).
  const uint64_t got = read_fully(fd, direct, slot + span.slot_offset, direct ? align_up(need) : need, span.file_begin, path, span);
  ++(direct ? stats.direct_spans : stats.buffered_spans);
  stats.bytes_read += std::min(got, need);
  if (got < need)
    throw InputError(path + ": file ends at byte " + std::to_string(span.file_begin + got) + ", inside the tensors '" +
                     span.first_tensor + "' .. '" + span.last_tensor + "' (they end at byte " +
                     std::to_string(span.file_end) + "); was the file truncated after it was opened?");
}

void reader_loop(const std::shared_ptr<PrefetchState>& st) {
  ShardFiles files(st->options.direct);
  for (size_t g = 0; g < st->plans.size(); ++g) {
    size_t slot_index = 0;
    {
      std::unique_lock lock(st->mu);
      st->cv.wait(lock, [&] {
        if (st->stop) return true;
        for (size_t i = 0; i < st->slots.size(); ++i)
          if (!st->slots[i].filled && !st->slots[i].held) return true;
        return false;
      });
      if (st->stop) return;
      for (size_t i = 0; i < st->slots.size(); ++i)
        if (!st->slots[i].filled && !st->slots[i].held) {
          slot_index = i;
          break;
        }
    }
    // The slot is free: only this thread touches it until it is marked filled.
    Slot& slot = st->slots[slot_index];
    const GroupPlan& plan = st->plans[g];
    try {
      if (slot.capacity < plan.slot_bytes) {  // grow: the old block goes first, so the peak stays low
        if (slot.data) st->options.allocator.release(slot.data);
        {
          std::lock_guard lock(st->mu);
          st->slot_bytes_now -= slot.capacity;
          slot.data = nullptr;
          slot.capacity = 0;
        }
        std::byte* fresh = st->options.allocator.allocate(plan.slot_bytes);
        std::lock_guard lock(st->mu);
        slot.data = fresh;
        slot.capacity = plan.slot_bytes;
        st->slot_bytes_now += slot.capacity;
        st->stats.peak_slot_bytes = std::max(st->stats.peak_slot_bytes, st->slot_bytes_now);
      }
      PrefetchStats local;
      const auto t0 = std::chrono::steady_clock::now();
      for (const Span& span : plan.spans) {
        {
          std::lock_guard lock(st->mu);
          if (st->stop) return;
        }
        read_span(files, span, slot.data, local);
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::lock_guard lock(st->mu);
      st->stats.bytes_read += local.bytes_read;
      st->stats.direct_spans += local.direct_spans;
      st->stats.buffered_spans += local.buffered_spans;
      st->stats.tensor_bytes += plan.tensor_bytes;
      st->stats.read_seconds += seconds;
      ++st->stats.groups_read;
      slot.group = g;
      slot.filled = true;
    } catch (...) {
      std::lock_guard lock(st->mu);
      st->error = std::current_exception();
      st->error_group = g;
      st->cv.notify_all();
      return;
    }
    st->cv.notify_all();
  }
}

}  // namespace

}  // namespace detail

const std::string& PrefetchedGroup::label() const { return state_->plans[index_].label; }

const std::vector<PrefetchedTensor>& PrefetchedGroup::tensors() const { return state_->views[index_]; }

const PrefetchedTensor& PrefetchedGroup::at(std::string_view name) const {
  for (const PrefetchedTensor& t : tensors())
    if (t.info->name == name) return t;
  throw InputError(label() + " has no tensor '" + std::string(name) + "'");
}

PrefetchedGroup::PrefetchedGroup(std::shared_ptr<detail::PrefetchState> state, size_t slot, size_t index)
    : state_(std::move(state)), slot_(slot), index_(index) {
  auto st = state_;
  release_ = std::shared_ptr<void>(nullptr, [st, slot](void*) {
    {
      std::lock_guard lock(st->mu);
      st->slots[slot].held = false;
    }
    st->cv.notify_all();
  });
}

TensorPrefetcher::TensorPrefetcher(const Checkpoint& checkpoint, std::vector<TensorGroup> groups, PrefetchOptions options)
    : state_(std::make_shared<detail::PrefetchState>()) {
  if (options.depth < 1) throw InputError("prefetch depth must be at least 1");
  if (!options.allocator.allocate || !options.allocator.release) throw Error("prefetch: no host allocator");
  state_->options = std::move(options);
  for (const TensorGroup& g : groups) state_->plans.push_back(detail::plan_group(checkpoint, g, state_->options.merge_gap));
  state_->views.resize(state_->plans.size());
  state_->slots.resize(state_->options.depth);
  reader_ = std::thread(detail::reader_loop, state_);
}

TensorPrefetcher::~TensorPrefetcher() {
  {
    std::lock_guard lock(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
  reader_.join();
}

size_t TensorPrefetcher::groups() const { return state_->plans.size(); }

std::optional<PrefetchedGroup> TensorPrefetcher::next() {
  auto& st = *state_;
  std::unique_lock lock(st.mu);
  const size_t g = st.next_to_hand_out;
  if (g >= st.plans.size()) return std::nullopt;
  size_t found = st.slots.size();
  st.cv.wait(lock, [&] {
    for (size_t i = 0; i < st.slots.size(); ++i)
      if (st.slots[i].filled && st.slots[i].group == g) {
        found = i;
        return true;
      }
    if (st.error && st.error_group == g) return true;
    // Every slot held by the caller: the reader can never fill group g.
    return std::all_of(st.slots.begin(), st.slots.end(), [](const detail::Slot& s) { return s.held; });
  });
  if (found == st.slots.size()) {
    if (st.error) std::rethrow_exception(st.error);
    throw Error("prefetch: all " + std::to_string(st.slots.size()) + " slots are held; drop a group before asking for '" +
                     st.plans[g].label + "'");
  }
  detail::Slot& slot = st.slots[found];
  slot.filled = false;
  slot.held = true;
  st.next_to_hand_out = g + 1;
  std::vector<PrefetchedTensor>& views = st.views[g];
  views.clear();
  for (const detail::PlannedTensor& t : st.plans[g].tensors)
    views.push_back({t.info, std::span<const std::byte>(slot.data + t.slot_offset, t.info->nbytes())});
  lock.unlock();
  return PrefetchedGroup(state_, found, g);
}

PrefetchStats TensorPrefetcher::stats() const {
  std::lock_guard lock(state_->mu);
  return state_->stats;
}

}  // namespace fp4kit::io
