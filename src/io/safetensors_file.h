#pragma once
// An opened safetensors file: the validated header plus zero-copy (mmap) and copying (pread) access to
// tensor data. Opening reads only the header, so opening every shard of an 865 GB model is cheap.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors_header.h"
#include "io/tensor_info.h"

namespace fp4kit::io {

class SafetensorsFile {
 public:
  // Reads the header with pread and validates it; InputError for a missing or unreadable file and
  // for every header problem. The data is mapped only when view() is first called.
  static SafetensorsFile open(const std::string& path);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();  // unmaps and closes

  const std::string& path() const;
  uint64_t file_size() const;  // as it was when opened
  const SafetensorsHeader& header() const;
  const std::vector<TensorInfo>& tensors() const;  // sorted by begin offset

  const TensorInfo* find(std::string_view name) const;  // nullptr if absent
  const TensorInfo& at(std::string_view name) const;    // InputError "FILE: no tensor 'X'"

  // Zero-copy view of the tensor's bytes. The whole file is mapped read-only (MAP_SHARED) on first use
  // and stays mapped until destruction. The file must not shrink while mapped: touching a page past
  // the new end raises SIGBUS. Use read() where that cannot be ruled out. Thread-safe.
  std::span<const std::byte> view(const TensorInfo& tensor) const;

  // Copies the tensor's bytes with pread; dst.size() must equal tensor.nbytes(). A file that shrank
  // since open gives an InputError. Thread-safe.
  void read(const TensorInfo& tensor, std::span<std::byte> dst) const;
  // Copies bytes [offset, offset + dst.size()) of the tensor; the range must lie inside it.
  void read_range(const TensorInfo& tensor, uint64_t offset, std::span<std::byte> dst) const;
  std::vector<std::byte> read_all(const TensorInfo& tensor) const;

  // From now on, reads of 64 KiB and more bypass the page cache (O_DIRECT, direct_io.h), for a job
  // that reads every byte once. False (and nothing changes) where the file system refuses. Call
  // before reading from several threads.
  bool enable_direct_reads() const;

  // Page-cache hints, best effort (errors ignored): a tensor is about to be read front to back, or is
  // done with. drop_cache lets a pass over the whole model run without the cache filling up with
  // pages that will not be read again.
  void advise_sequential(const TensorInfo& tensor) const;
  void drop_cache(const TensorInfo& tensor) const;

 private:
  struct State;
  explicit SafetensorsFile(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace fp4kit::io
