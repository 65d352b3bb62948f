// Fuzz target: a calibration data file as `calibrate --data` reads it without a tokenizer: token ids
// as text (.ids) or as a safetensors input_ids tensor, and whatever the format guess makes of the
// bytes. Each is read with the file's own shape (samples 0, seq_len 0) and with a fixed one. An
// fp4kit::Error is the expected rejection; any other exception, a crash, a hang or a sanitizer
// report is a bug. An accepted batch must be rectangular and hold only ids inside the vocabulary.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "calib/calib_data.h"

namespace {

constexpr int64_t kVocab = 1024;

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "FINDING: %s\n", what);
  std::abort();
}

// One memfd for the whole run, rewritten for each input.
int scratch_fd() {
  static const int fd = [] {
    const int f = ::memfd_create("calib_data_fuzz", MFD_CLOEXEC);
    if (f < 0) finding("memfd_create failed");
    return f;
  }();
  return fd;
}

void read_as(const std::string& path, fp4kit::calib::DataFormat format, const fp4kit::calib::CalibDataOptions& options) {
  try {
    const fp4kit::calib::CalibBatch b = fp4kit::calib::load_calib_data(path, format, nullptr, options);
    if (b.rows < 1 || b.seq_len < 1 || b.ids.size() != static_cast<size_t>(b.rows * b.seq_len)) finding("batch not rectangular");
    if (options.samples > 0 && b.rows > options.samples) finding("more rows than asked for");
    if (options.seq_len > 0 && b.seq_len != options.seq_len) finding("rows not cut to seq_len");
    for (int64_t id : b.ids)
      if (id < 0 || id >= kVocab) finding("an id outside the vocabulary accepted");
  } catch (const fp4kit::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = scratch_fd();
  if (::ftruncate(fd, 0) != 0) finding("ftruncate failed");
  if (size > 0 && ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) finding("pwrite failed");
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  using fp4kit::calib::DataFormat;
  for (DataFormat format : {DataFormat::Auto, DataFormat::TokenIds, DataFormat::Safetensors}) {
    read_as(path, format, {0, 0, 4096, kVocab});
    read_as(path, format, {2, 8, 4096, kVocab});
  }
  return 0;
}
