// libFuzzer target: arbitrary bytes as a whole safetensors file.
//
// 1. parse_safetensors_header must either succeed or throw fp4kit::Error: any other exception, a crash
//    or a sanitizer report is a finding.
// 2. What it accepts must satisfy the format's invariants (checked here independently).
// 3. Accepted files (with at most 1 MB of tensor data) also go through SafetensorsFile::open and every
//    tensor is read with pread and through the mmap view; both must succeed and agree.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <span>
#include <string>

#include "base/error.h"
#include "io/safetensors_file.h"
#include "io/safetensors_header.h"

namespace {

using namespace fp4kit;
using namespace fp4kit::io;

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "FINDING: %s\n", what);
  std::abort();
}

void check_invariants(const SafetensorsHeader& h, uint64_t file_size) {
  if (h.data_offset < 8 || h.data_offset > file_size) finding("data_offset outside the file");
  std::set<std::string> names;
  uint64_t furthest_end = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& t : h.tensors) {
    if (t.name.empty() || !names.insert(t.name).second) finding("empty or duplicate name accepted");
    if (t.begin > t.end || t.end > file_size - h.data_offset) finding("range outside the data section");
    const StorageSize size = storage_size(t.dtype, t.shape);
    if (!size.problem.empty() || size.nbytes != t.nbytes()) finding("byte size does not match shape x dtype");
    if (previous && previous->begin > t.begin) finding("tensors not sorted by begin");
    if (t.nbytes() > 0) {
      if (t.begin < furthest_end) finding("overlapping ranges accepted");
      furthest_end = t.end;
    }
    previous = &t;
  }
}

// One memfd for the whole run, rewritten for each input: no disk traffic.
int scratch_fd() {
  static const int fd = [] {
    const int f = ::memfd_create("safetensors_header_fuzz", MFD_CLOEXEC);
    if (f < 0) finding("memfd_create failed");
    return f;
  }();
  return fd;
}

void read_through_file(std::span<const std::byte> bytes, const SafetensorsHeader& parsed) {
  const int fd = scratch_fd();
  if (::ftruncate(fd, 0) != 0) finding("ftruncate failed");
  if (::pwrite(fd, bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size())) finding("pwrite failed");
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  // Parsing succeeded on the same bytes, so nothing here may throw: an exception escapes and aborts.
  const SafetensorsFile file = SafetensorsFile::open(path);
  if (file.tensors().size() != parsed.tensors.size()) finding("open() and the parser disagree");
  for (const TensorInfo& t : file.tensors()) {
    file.advise_sequential(t);
    const std::vector<std::byte> copy = file.read_all(t);
    const std::span<const std::byte> view = file.view(t);
    if (view.size() != copy.size() || (!copy.empty() && std::memcmp(view.data(), copy.data(), copy.size()) != 0))
      finding("view() and read() disagree");
    if (!copy.empty() &&
        std::memcmp(copy.data(), bytes.data() + file.header().data_offset + t.begin, copy.size()) != 0)
      finding("read() returned the wrong bytes");
    file.drop_cache(t);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  SafetensorsHeader header;
  try {
    header = parse_safetensors_header(bytes, size, "fuzz");
  } catch (const fp4kit::Error&) {
    return 0;
  }
  check_invariants(header, size);
  uint64_t total = 0;
  for (const TensorInfo& t : header.tensors) total += t.nbytes();
  if (total <= (uint64_t{1} << 20)) read_through_file(bytes, header);
  return 0;
}
