#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <random>
#include <system_error>

#include "base/error.h"

namespace fp4kit::io {

namespace {

std::string errno_text_with_hint(int err) {
  std::string text = std::error_code(err, std::generic_category()).message();
  if (err == ENOSPC) text += " (disk full)";
  if (err == EDQUOT) text += " (disk quota exceeded)";
  if (err == EIO) text += " (I/O error: the disk or the file system failed)";
  if (err == EFBIG) text += " (file size limit exceeded)";
  return text;
}

std::string directory_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string temp_path_for(const std::string& final_path) {
  const size_t slash = final_path.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : final_path.substr(0, slash + 1);
  const std::string name = slash == std::string::npos ? final_path : final_path.substr(slash + 1);
  std::random_device rd;
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "%08x%08x", rd(), rd());
  return dir + "." + name + ".tmp-" + std::to_string(::getpid()) + "-" + suffix;
}

}  // namespace

AtomicFile::AtomicFile(std::string final_path) : final_path_(std::move(final_path)) {
  if (final_path_.empty() || final_path_.back() == '/') throw Error("'" + final_path_ + "': not a file name");
  temp_path_ = temp_path_for(final_path_);
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd_ < 0)
    throw Error(final_path_ + ": cannot create temporary file " + temp_path_ + ": " + errno_text_with_hint(errno));
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : final_path_(std::move(other.final_path_)),
      temp_path_(std::move(other.temp_path_)),
      fd_(other.fd_),
      bytes_written_(other.bytes_written_),
      committed_(other.committed_),
      failed_(other.failed_) {
  other.fd_ = -1;
  other.committed_ = true;  // the moved-from object owns no temporary file any more
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  if (fd_ >= 0) ::close(fd_);
  ::unlink(temp_path_.c_str());
}

void AtomicFile::fail(const std::string& what, int err) {
  failed_ = true;
  throw Error(final_path_ + ": " + what + ": " + errno_text_with_hint(err));
}

void AtomicFile::write(std::span<const std::byte> bytes) {
  if (committed_ || failed_) throw Error(final_path_ + ": write after commit or after a failed write");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write", errno);
    }
    if (n == 0) fail("cannot write", EIO);  // not expected from a regular file; never loop forever
    done += static_cast<size_t>(n);
    bytes_written_ += static_cast<uint64_t>(n);
  }
}

void AtomicFile::skip(uint64_t n) {
  if (committed_ || failed_) throw Error(final_path_ + ": skip after commit or after a failed write");
  if (n == 0) return;
  uint64_t end = 0;
  if (__builtin_add_overflow(bytes_written_, n, &end) || end > static_cast<uint64_t>(INT64_MAX))
    fail("cannot extend the file", EFBIG);
  // ftruncate makes the hole (and the file size) now, also when nothing is written after it.
  if (::ftruncate(fd_, static_cast<off_t>(end)) != 0) fail("cannot extend the file", errno);
  if (::lseek(fd_, static_cast<off_t>(end), SEEK_SET) < 0) fail("cannot seek", errno);
  bytes_written_ = end;
}

void AtomicFile::write(std::string_view text) { write(std::as_bytes(std::span(text.data(), text.size()))); }

void AtomicFile::commit() {
  if (committed_) throw Error(final_path_ + ": committed twice");
  if (failed_) throw Error(final_path_ + ": not committed because an earlier write failed");
  // Data must be on disk before the rename is, or a crash could publish an empty or partial file.
  if (::fsync(fd_) != 0) fail("cannot fsync", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("cannot close", errno);
  if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0)
    fail("cannot rename " + temp_path_ + " onto it", errno);
  committed_ = true;
  // Make the rename itself durable. Some file systems cannot fsync a directory (EINVAL): nothing to do there.
  const std::string dir = directory_of(final_path_);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) throw Error(final_path_ + ": cannot open directory " + dir + " to fsync it: " + errno_text_with_hint(errno));
  const int rc = ::fsync(dir_fd);
  const int err = errno;
  ::close(dir_fd);
  if (rc != 0 && err != EINVAL) throw Error(final_path_ + ": cannot fsync directory " + dir + ": " + errno_text_with_hint(err));
}

void write_file_atomic(const std::string& path, std::string_view contents) {
  AtomicFile file(path);
  file.write(contents);
  file.commit();
}

}  // namespace fp4kit::io
