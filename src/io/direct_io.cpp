#include "io/direct_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/errno_text.h"
#include "base/error.h"

namespace fp4kit::io {

namespace {

constexpr size_t kBounceBytes = 4u << 20;

}  // namespace

void AlignedBuffer::Free::operator()(std::byte* p) const { std::free(p); }

AlignedBuffer::AlignedBuffer(size_t bytes) : size_(static_cast<size_t>(align_up(std::max<size_t>(bytes, 1)))) {
  void* p = std::aligned_alloc(kDirectAlignment, size_);
  if (!p) throw Error("cannot allocate an aligned buffer of " + std::to_string(size_) + " bytes");
  data_.reset(static_cast<std::byte*>(p));
}

int open_direct_read(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) return -1;
  // Some file systems accept the flag and refuse the reads (EINVAL): try one block first.
  AlignedBuffer probe(kDirectAlignment);
  if (::pread(fd, probe.data(), probe.size(), 0) < 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void direct_pread(int fd, uint64_t offset, std::span<std::byte> dst, const std::string& path, const std::string& what) {
  AlignedBuffer bounce(std::min<uint64_t>(kBounceBytes, align_up(dst.size()) + kDirectAlignment));
  uint64_t done = 0;
  while (done < dst.size()) {
    const uint64_t want = offset + done;
    const uint64_t start = align_down(want);
    const uint64_t skip = want - start;
    const uint64_t len = std::min<uint64_t>(bounce.size(), align_up(skip + (dst.size() - done)));
    ssize_t n;
    do n = ::pread(fd, bounce.data(), static_cast<size_t>(len), static_cast<off_t>(start));
    while (n < 0 && errno == EINTR);
    if (n < 0) throw InputError(path + ": cannot read " + what + ": " + errno_text(errno));
    if (static_cast<uint64_t>(n) <= skip)
      throw InputError(path + ": file ends at byte " + std::to_string(start + static_cast<uint64_t>(n)) + ", inside " + what +
                       " (was it truncated after it was opened?)");
    const uint64_t got = std::min<uint64_t>(static_cast<uint64_t>(n) - skip, dst.size() - done);
    std::memcpy(dst.data() + done, bounce.data() + skip, static_cast<size_t>(got));
    done += got;
  }
}

DirectWriteStream::DirectWriteStream(std::string path, int fd, size_t buffer_bytes)
    : path_(std::move(path)), fd_(fd), buffer_(std::max<size_t>(buffer_bytes, kDirectAlignment)) {}

DirectWriteStream::DirectWriteStream(DirectWriteStream&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(other.fd_),
      buffer_(std::move(other.buffer_)),
      staged_(other.staged_),
      flushed_(other.flushed_) {
  other.fd_ = -1;
}

DirectWriteStream::~DirectWriteStream() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<DirectWriteStream> DirectWriteStream::open(const std::string& path, uint64_t prefix_bytes,
                                                        size_t buffer_bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) {
    if (errno == EINVAL || errno == EOPNOTSUPP) return std::nullopt;
    throw Error(path + ": cannot open for direct writing: " + errno_text(errno));
  }
  // Some file systems accept the flag and refuse the writes (EINVAL): try one block past the
  // prefix, then give the file its length back.
  {
    struct stat st {};
    AlignedBuffer probe(kDirectAlignment);
    std::memset(probe.data(), 0, probe.size());
    const bool ok = ::fstat(fd, &st) == 0 &&
                    ::pwrite(fd, probe.data(), probe.size(), static_cast<off_t>(align_up(prefix_bytes))) ==
                        static_cast<ssize_t>(probe.size()) &&
                    ::ftruncate(fd, st.st_size) == 0;
    if (!ok) {
      const int err = errno;
      ::close(fd);
      if (err == EINVAL || err == EOPNOTSUPP) return std::nullopt;
      throw Error(path + ": cannot write around the page cache: " + errno_text(err));
    }
  }
  DirectWriteStream s(path, fd, buffer_bytes);
  if (prefix_bytes) {
    // The prefix is small (a header): read it back through an ordinary descriptor.
    std::string prefix(static_cast<size_t>(prefix_bytes), '\0');
    const int rfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (rfd < 0) throw Error(path + ": cannot open to read back its first bytes: " + errno_text(errno));
    const ssize_t n = ::pread(rfd, prefix.data(), prefix.size(), 0);
    const int err = errno;
    ::close(rfd);
    if (n != static_cast<ssize_t>(prefix.size()))
      throw Error(path + ": cannot read back its first " + std::to_string(prefix_bytes) + " bytes: " +
                  (n < 0 ? errno_text(err) : "short read"));
    s.append(std::as_bytes(std::span(prefix.data(), prefix.size())));
  }
  return std::optional<DirectWriteStream>(std::move(s));
}

void DirectWriteStream::fail(const std::string& what, int err) const {
  throw Error(path_ + ": " + what + ": " + errno_text(err));
}

void DirectWriteStream::flush_full_buffer() {
  size_t done = 0;
  while (done < staged_) {
    const ssize_t n = ::pwrite(fd_, buffer_.data() + done, staged_ - done, static_cast<off_t>(flushed_ + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write", errno);
    }
    if (n == 0) fail("cannot write", EIO);
    done += static_cast<size_t>(n);
  }
  flushed_ += staged_;
  staged_ = 0;
}

void DirectWriteStream::append(std::span<const std::byte> bytes) {
  if (fd_ < 0) throw Error(path_ + ": append after finish");
  while (!bytes.empty()) {
    const size_t n = std::min(bytes.size(), buffer_.size() - staged_);
    std::memcpy(buffer_.data() + staged_, bytes.data(), n);
    staged_ += n;
    bytes = bytes.subspan(n);
    if (staged_ == buffer_.size()) flush_full_buffer();
  }
}

void DirectWriteStream::finish() {
  if (fd_ < 0) throw Error(path_ + ": finished twice");
  const uint64_t total = size();
  // The tail as a whole padded block, then the file cut back to its true length.
  const size_t tail = staged_;
  if (tail) {
    const size_t padded = static_cast<size_t>(align_up(tail));
    std::memset(buffer_.data() + tail, 0, padded - tail);
    staged_ = padded;
    flush_full_buffer();
  }
  if (::ftruncate(fd_, static_cast<off_t>(total)) != 0) fail("cannot set the file's length", errno);
  flushed_ = total;
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("cannot close", errno);
}

}  // namespace fp4kit::io
