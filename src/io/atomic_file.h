#pragma once
// Publishing a file so that readers (and a crash) see either the old file or the complete new one,
// never a half-written one under the final name: write a temporary file beside it, fsync, rename.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace fp4kit::io {

class AtomicFile {
 public:
  // Creates "<dir>/.<name>.tmp-<pid>-<random>" next to `final_path`; Error if it cannot.
  explicit AtomicFile(std::string final_path);
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  // Without commit(): closes and removes the temporary file; the final name is left untouched.
  ~AtomicFile();

  // Appends; loops on partial writes. Errors (disk full, I/O error, ...) throw an Error naming the
  // final path, and make commit() refuse.
  void write(std::span<const std::byte> bytes);
  void write(std::string_view text);
  // Moves the end of the file `n` bytes on without writing them: a hole that reads as zeros and,
  // on file systems with sparse files, takes no disk space. Counts as written.
  void skip(uint64_t n);
  uint64_t bytes_written() const { return bytes_written_; }

  // fsync, rename onto the final name, fsync the directory: afterwards the final name holds the
  // complete file, also after a crash. No writes after this.
  void commit();

  const std::string& final_path() const { return final_path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  [[noreturn]] void fail(const std::string& what, int err);
  std::string final_path_;
  std::string temp_path_;
  int fd_ = -1;
  uint64_t bytes_written_ = 0;
  bool committed_ = false;
  bool failed_ = false;
};

// The whole file at once, atomically.
void write_file_atomic(const std::string& path, std::string_view contents);

}  // namespace fp4kit::io
