#pragma once
// What the streaming benchmarks share: dropping a checkpoint's pages from the page cache (fadvise,
// best effort) and the raw read of its files that a streamed pass is measured against.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "io/checkpoint_index.h"
#include "io/direct_io.h"

namespace fp4kit::bench {

inline void drop_cache(const io::Checkpoint& ckpt) {
  for (const auto& f : ckpt.shard_files()) {
    const int fd = ::open((ckpt.dir() + "/" + f).c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

inline double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct RawRead {
  uint64_t bytes = 0;
  double seconds = 0;
  bool direct = true;  // false if some file went through the page cache
};

// Every shard front to back in 16 MiB blocks, O_DIRECT where allowed (and asked for), cache dropped first.
inline RawRead raw_read(const io::Checkpoint& ckpt, bool want_direct) {
  drop_cache(ckpt);
  io::AlignedBuffer block(16u << 20);
  RawRead r;
  const double t0 = now();
  for (const auto& f : ckpt.shard_files()) {
    const std::string path = ckpt.dir() + "/" + f;
    int fd = want_direct ? io::open_direct_read(path) : -1;
    if (fd < 0) {
      r.direct = false;
      fd = ::open(path.c_str(), O_RDONLY);
    }
    for (off_t off = 0;;) {
      const ssize_t n = ::pread(fd, block.data(), block.size(), off);
      if (n <= 0) break;
      off += n;
      r.bytes += static_cast<uint64_t>(n);
    }
    ::close(fd);
  }
  r.seconds = now() - t0;
  return r;
}

}  // namespace fp4kit::bench
