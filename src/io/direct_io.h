#pragma once
// Reading and writing around the page cache (O_DIRECT), for jobs that stream each byte once: on
// virtual machines the kernel's copies into and out of the page cache can cost more CPU than all
// of a conversion's arithmetic, and no byte is read twice anyway. O_DIRECT wants the buffer, the
// file offset and the length aligned (4096 covers every common device); these helpers take care of
// that, so callers read and write any range. File systems without O_DIRECT (tmpfs) refuse the open:
// callers then keep to ordinary reads and writes, which give the same bytes.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace fp4kit::io {

inline constexpr size_t kDirectAlignment = 4096;
inline uint64_t align_down(uint64_t v) { return v / kDirectAlignment * kDirectAlignment; }
inline uint64_t align_up(uint64_t v) { return (v + kDirectAlignment - 1) / kDirectAlignment * kDirectAlignment; }

// A heap buffer (uninitialised) whose address and size are multiples of kDirectAlignment.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes);  // rounded up to the alignment
  std::byte* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte, Free> data_;
  size_t size_ = 0;
};

// An O_DIRECT descriptor on `path` for reading; -1 if the file system refuses it.
int open_direct_read(const std::string& path);

// Bytes [offset, offset + dst.size()) of the file behind `fd` (opened by open_direct_read), through
// aligned reads into a bounce buffer. InputError naming `path` and `what` on a read error or a file
// that ends early. Thread-safe (each call has its own buffer).
void direct_pread(int fd, uint64_t offset, std::span<std::byte> dst, const std::string& path, const std::string& what);

// Writes a file front to back through O_DIRECT in aligned blocks from an aligned staging buffer;
// the last partial block is written padded, then the file is cut to the stream's true length.
class DirectWriteStream {
 public:
  // Takes over writing the existing file `path` from its first byte; its first `prefix_bytes`
  // (already written by someone else, e.g. a header) are read back and rewritten as they are.
  // nullopt if the file system refuses O_DIRECT. Error naming the path on other failures.
  static std::optional<DirectWriteStream> open(const std::string& path, uint64_t prefix_bytes, size_t buffer_bytes);
  DirectWriteStream(DirectWriteStream&&) noexcept;
  DirectWriteStream& operator=(DirectWriteStream&&) = delete;
  DirectWriteStream(const DirectWriteStream&) = delete;
  DirectWriteStream& operator=(const DirectWriteStream&) = delete;
  ~DirectWriteStream();

  // Appends after everything before. Error (disk full, I/O error...) naming the path.
  void append(std::span<const std::byte> bytes);
  // Writes what is staged and cuts the file to size(); no appends after this.
  void finish();
  uint64_t size() const { return flushed_ + staged_; }

 private:
  DirectWriteStream(std::string path, int fd, size_t buffer_bytes);
  void flush_full_buffer();
  [[noreturn]] void fail(const std::string& what, int err) const;

  std::string path_;
  int fd_ = -1;
  AlignedBuffer buffer_;
  size_t staged_ = 0;     // bytes in buffer_
  uint64_t flushed_ = 0;  // bytes written to the file (a multiple of the alignment)
};

}  // namespace fp4kit::io
