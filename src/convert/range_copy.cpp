#include "convert/range_copy.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <span>

#include "base/errno_text.h"
#include "base/error.h"

namespace fp4kit {

namespace {

constexpr uint64_t kCopyPieceBytes = 8ull << 20;  // copied, then hashed, at a time

bool kernel_cannot_copy(int err) { return err == EXDEV || err == EINVAL || err == ENOSYS || err == EOPNOTSUPP; }

void pread_all(int fd, uint64_t offset, std::span<std::byte> dst, const std::string& label) {
  for (size_t done = 0; done < dst.size();) {
    const ssize_t n = ::pread(fd, dst.data() + done, dst.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(label + ": cannot read the source while copying: " + (n < 0 ? errno_text(errno) : "short file"));
    done += static_cast<size_t>(n);
  }
}

void pwrite_all(int fd, uint64_t offset, std::span<const std::byte> src, const std::string& label) {
  for (size_t done = 0; done < src.size();) {
    const ssize_t n = ::pwrite(fd, src.data() + done, src.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(label + ": cannot write: " + (n < 0 ? errno_text(errno) : "no progress"));
    done += static_cast<size_t>(n);
  }
}

std::span<std::byte> piece_buffer(std::vector<std::byte>& buffer, uint64_t n) {
  if (buffer.size() < n) buffer.resize(static_cast<size_t>(n));
  return std::span(buffer).first(static_cast<size_t>(n));
}

}  // namespace

void copy_range_ref(const RangeCopy& c, ShardHasher* hasher, std::vector<std::byte>& buffer,
                    const std::string& dst_label) {
  for (uint64_t done = 0; done < c.bytes;) {
    const std::span<std::byte> piece = piece_buffer(buffer, std::min(kCopyPieceBytes, c.bytes - done));
    pread_all(c.src_fd, c.src_offset + done, piece, dst_label);
    pwrite_all(c.dst_fd, c.dst_offset + done, piece, dst_label);
    if (hasher) hasher->update(piece);
    done += piece.size();
  }
}

bool copy_range(const RangeCopy& c, ShardHasher* hasher, std::vector<std::byte>& buffer, const std::string& dst_label) {
  for (uint64_t done = 0; done < c.bytes;) {
    const uint64_t n = std::min(kCopyPieceBytes, c.bytes - done);
    for (uint64_t copied = 0; copied < n;) {
      loff_t in = static_cast<loff_t>(c.src_offset + done + copied), out = static_cast<loff_t>(c.dst_offset + done + copied);
      const ssize_t r = ::copy_file_range(c.src_fd, &in, c.dst_fd, &out, static_cast<size_t>(n - copied), 0);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && kernel_cannot_copy(errno)) {
        // What this piece copied so far is rewritten: the rest goes the plain way.
        RangeCopy rest = c;
        rest.src_offset += done;
        rest.dst_offset += done;
        rest.bytes -= done;
        copy_range_ref(rest, hasher, buffer, dst_label);
        return false;
      }
      if (r < 0) throw Error(dst_label + ": cannot write: " + errno_text(errno));
      if (r == 0) throw Error(dst_label + ": cannot copy: the source ended early");
      copied += static_cast<uint64_t>(r);
    }
    // The source's pages of this piece are in the page cache now: hashing them costs one read.
    if (hasher) {
      const std::span<std::byte> piece = piece_buffer(buffer, n);
      pread_all(c.src_fd, c.src_offset + done, piece, dst_label);
      hasher->update(piece);
    }
    done += n;
  }
  return true;
}

std::optional<OpenTempShard> open_temp_shard(const io::SafetensorsWriter& writer) {
  const int fd = ::open(writer.temp_path().c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  return OpenTempShard{fd, writer.data_offset()};
}

}  // namespace fp4kit
