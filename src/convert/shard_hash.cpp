#include "convert/shard_hash.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <system_error>
#include <vector>

#include <xxhash.h>

#include "base/error.h"
#include "io/safetensors_file.h"

namespace fp4kit {

struct ShardHasher::State {
  XXH3_state_t* xxh = XXH3_createState();
};

ShardHasher::ShardHasher() : state_(std::make_unique<State>()) {
  if (!state_->xxh) throw Error("cannot allocate an XXH3 state");
  XXH3_64bits_reset(state_->xxh);
}

ShardHasher::~ShardHasher() { XXH3_freeState(state_->xxh); }

void ShardHasher::update(std::span<const std::byte> bytes) { XXH3_64bits_update(state_->xxh, bytes.data(), bytes.size()); }

std::string ShardHasher::hex() const {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(XXH3_64bits_digest(state_->xxh)));
  return buf;
}

std::string shard_data_xxh3(const std::string& path) {
  uint64_t offset = 0;
  {
    const io::SafetensorsFile file = io::SafetensorsFile::open(path);
    offset = file.header().data_offset;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::error_code(errno, std::generic_category()).message());
  ShardHasher hasher;
  std::vector<std::byte> buffer(8 << 20);
  for (;;) {
    const ssize_t n = ::pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw Error(path + ": cannot read: " + std::error_code(err, std::generic_category()).message());
    }
    if (n == 0) break;
    hasher.update(std::span(buffer).first(static_cast<size_t>(n)));
    offset += static_cast<uint64_t>(n);
  }
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  return hasher.hex();
}

}  // namespace fp4kit
