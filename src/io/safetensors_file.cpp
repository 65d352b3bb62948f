#include "io/safetensors_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <system_error>
#include <unordered_map>

#include "base/errno_text.h"
#include "base/error.h"
#include "io/direct_io.h"
#include "io/quote_name.h"

namespace fp4kit::io {

namespace {

uint64_t page_size() {
  static const auto size = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return size;
}

constexpr size_t kDirectReadMinBytes = 64 << 10;  // smaller reads are not worth a bounce buffer

// pread until `dst` is full. `what` describes the bytes for messages ("the header", "tensor 'x'").
void pread_exact(int fd, std::span<std::byte> dst, uint64_t offset, const std::string& path,
                 const std::string& what) {
  size_t done = 0;
  while (done < dst.size()) {
    const ssize_t n = ::pread(fd, dst.data() + done, dst.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw InputError(path + ": cannot read " + what + ": " + errno_text(errno));
    }
    if (n == 0)
      throw InputError(path + ": file ends at byte " + std::to_string(offset + done) + ", inside " + what +
                       " (was it truncated after it was opened?)");
    done += static_cast<size_t>(n);
  }
}

}  // namespace

struct SafetensorsFile::State {
  std::string path;
  int fd = -1;
  int direct_fd = -1;  // O_DIRECT, once enable_direct_reads() succeeded
  uint64_t file_size = 0;
  SafetensorsHeader header;
  std::unordered_map<std::string_view, size_t> index_of;  // keys view header.tensors[i].name
  mutable std::mutex map_mutex;
  mutable std::atomic<const std::byte*> mapping{nullptr};

  ~State() {
    if (const std::byte* m = mapping.load()) ::munmap(const_cast<std::byte*>(m), file_size);
    if (fd >= 0) ::close(fd);
    if (direct_fd >= 0) ::close(direct_fd);
  }

  // Absolute file offset of the tensor's first byte, after checking that the TensorInfo describes a
  // range of this file (a TensorInfo from another file must not reach past our mapping).
  uint64_t file_offset(const TensorInfo& t) const {
    if (t.begin > t.end || t.end > file_size - header.data_offset)
      throw Error(path + ": tensor " + quote_name(t.name) + ": data_offsets do not lie inside this file");
    return header.data_offset + t.begin;
  }

  const std::byte* map_whole_file() const {
    if (const std::byte* m = mapping.load(std::memory_order_acquire)) return m;
    std::lock_guard lock(map_mutex);
    if (const std::byte* m = mapping.load(std::memory_order_relaxed)) return m;
    // A file that already shrank would SIGBUS on access; catch that case here at least.
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw InputError(path + ": cannot stat: " + errno_text(errno));
    if (static_cast<uint64_t>(st.st_size) < file_size)
      throw InputError(path + ": file shrank from " + std::to_string(file_size) + " to " +
                       std::to_string(st.st_size) + " bytes since it was opened");
    void* m = ::mmap(nullptr, file_size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) throw Error(path + ": cannot map the file: " + errno_text(errno));
    mapping.store(static_cast<const std::byte*>(m), std::memory_order_release);
    return static_cast<const std::byte*>(m);
  }

  // The mapped pages covering the tensor, rounded out to page boundaries (madvise wants aligned starts).
  std::span<std::byte> mapped_pages(const TensorInfo& t, const std::byte* base) const {
    const uint64_t first = file_offset(t) / page_size() * page_size();
    const uint64_t last = std::min(file_size, file_offset(t) + t.nbytes());
    return {const_cast<std::byte*>(base) + first, static_cast<size_t>(last - first)};
  }
};

SafetensorsFile::SafetensorsFile(std::unique_ptr<State> state) : state_(std::move(state)) {}
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto state = std::make_unique<State>();
  state->path = path;
  state->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (state->fd < 0) throw InputError(path + ": cannot open: " + errno_text(errno));
  struct stat st {};
  if (::fstat(state->fd, &st) != 0) throw InputError(path + ": cannot stat: " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) throw InputError(path + ": not a regular file");
  state->file_size = static_cast<uint64_t>(st.st_size);

  // Read the length, then exactly the header; a length the parser will refuse is not read at all.
  std::vector<std::byte> prefix(std::min<uint64_t>(state->file_size, 8));
  pread_exact(state->fd, prefix, 0, path, "the header length");
  if (prefix.size() == 8) {
    const uint64_t length = safetensors_header_length(std::span<const std::byte, 8>(prefix.data(), 8));
    if (length > 0 && length <= kMaxSafetensorsHeaderBytes && length <= state->file_size - 8) {
      prefix.resize(8 + length);
      pread_exact(state->fd, std::span(prefix).subspan(8), 8, path, "the header");
    }
  }
  state->header = parse_safetensors_header(prefix, state->file_size, path);
  const auto& tensors = state->header.tensors;
  state->index_of.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) state->index_of.emplace(tensors[i].name, i);
  return SafetensorsFile(std::move(state));
}

const std::string& SafetensorsFile::path() const { return state_->path; }
uint64_t SafetensorsFile::file_size() const { return state_->file_size; }
const SafetensorsHeader& SafetensorsFile::header() const { return state_->header; }
const std::vector<TensorInfo>& SafetensorsFile::tensors() const { return state_->header.tensors; }

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = state_->index_of.find(name);
  return it == state_->index_of.end() ? nullptr : &state_->header.tensors[it->second];
}

const TensorInfo& SafetensorsFile::at(std::string_view name) const {
  if (const TensorInfo* t = find(name)) return *t;
  throw InputError(state_->path + ": no tensor " + quote_name(name));
}

std::span<const std::byte> SafetensorsFile::view(const TensorInfo& tensor) const {
  const uint64_t offset = state_->file_offset(tensor);
  if (tensor.nbytes() == 0) return {};
  return {state_->map_whole_file() + offset, static_cast<size_t>(tensor.nbytes())};
}

void SafetensorsFile::read(const TensorInfo& tensor, std::span<std::byte> dst) const {
  if (dst.size() != tensor.nbytes())
    throw Error(state_->path + ": tensor " + quote_name(tensor.name) + ": read into a buffer of " +
                std::to_string(dst.size()) + " bytes, but the tensor has " + std::to_string(tensor.nbytes()));
  read_range(tensor, 0, dst);
}

void SafetensorsFile::read_range(const TensorInfo& tensor, uint64_t offset, std::span<std::byte> dst) const {
  const uint64_t start = state_->file_offset(tensor);
  if (offset > tensor.nbytes() || dst.size() > tensor.nbytes() - offset)
    throw Error(state_->path + ": tensor " + quote_name(tensor.name) + ": bytes [" + std::to_string(offset) + ", " +
                std::to_string(offset + dst.size()) + ") lie outside its " + std::to_string(tensor.nbytes()) +
                " bytes");
  if (state_->direct_fd >= 0 && dst.size() >= kDirectReadMinBytes)
    direct_pread(state_->direct_fd, start + offset, dst, state_->path, "tensor " + quote_name(tensor.name));
  else
    pread_exact(state_->fd, dst, start + offset, state_->path, "tensor " + quote_name(tensor.name));
}

bool SafetensorsFile::enable_direct_reads() const {
  if (state_->direct_fd < 0) state_->direct_fd = open_direct_read(state_->path);
  return state_->direct_fd >= 0;
}

std::vector<std::byte> SafetensorsFile::read_all(const TensorInfo& tensor) const {
  std::vector<std::byte> bytes(tensor.nbytes());
  read(tensor, bytes);
  return bytes;
}

void SafetensorsFile::advise_sequential(const TensorInfo& tensor) const {
  const uint64_t offset = state_->file_offset(tensor);
  if (tensor.nbytes() == 0) return;
  ::posix_fadvise(state_->fd, static_cast<off_t>(offset), static_cast<off_t>(tensor.nbytes()),
                  POSIX_FADV_SEQUENTIAL);
  if (const std::byte* base = state_->mapping.load(std::memory_order_acquire)) {
    const auto pages = state_->mapped_pages(tensor, base);
    ::madvise(pages.data(), pages.size(), MADV_SEQUENTIAL);
  }
}

void SafetensorsFile::drop_cache(const TensorInfo& tensor) const {
  const uint64_t offset = state_->file_offset(tensor);
  if (tensor.nbytes() == 0) return;
  // Unmap our pages first: the kernel keeps mapped pages in the cache whatever fadvise says. Rounding
  // out to whole pages may unmap a neighbour's first or last page too; it is simply read in again.
  if (const std::byte* base = state_->mapping.load(std::memory_order_acquire)) {
    const auto pages = state_->mapped_pages(tensor, base);
    ::madvise(pages.data(), pages.size(), MADV_DONTNEED);
  }
  ::posix_fadvise(state_->fd, static_cast<off_t>(offset), static_cast<off_t>(tensor.nbytes()),
                  POSIX_FADV_DONTNEED);
}

}  // namespace fp4kit::io
