#pragma once
// Device memory, pinned host memory, streams and events as RAII types, usable from plain C++
// (tests, benchmarks, the engine) without CUDA headers. Every failure throws DeviceError naming the
// call and the size; an allocation the device cannot satisfy says how much was free.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

struct CUstream_st;  // cudaStream_t is CUstream_st*
struct CUevent_st;   // cudaEvent_t is CUevent_st*

namespace fp4kit::cuda {

using StreamHandle = CUstream_st*;

class Stream {
 public:
  Stream();  // a non-blocking stream of the current device
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  StreamHandle get() const { return s_; }
  void synchronize(const char* what = "stream synchronize") const;

 private:
  StreamHandle s_ = nullptr;
};

// Bytes held in DeviceBuffers now, and the most held at once since the last reset (process-wide;
// cuBLAS workspaces and the CUDA context are not counted).
size_t device_bytes_in_use();
size_t device_bytes_peak();
void reset_device_bytes_peak();
// A cap on the bytes DeviceBuffers may hold at once (0, the default: none). An allocation past it
// fails as an out-of-memory does (DeviceError naming the buffer, what is in use and the cap).
void set_device_bytes_budget(size_t bytes);
size_t device_bytes_budget();

// Device bytes. `what` names the buffer in errors ("nvfp4 weight [3072, 3584]"). cudaMalloc'ed, or,
// when made on a thread inside a StreamOrderedAllocations scope, taken from the device's memory pool
// in that scope's stream order and given back in the same order when the buffer goes.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes, const std::string& what = "device buffer");
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)), stream_(std::exchange(o.stream_, nullptr)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  template <class T = void>
  T* data() const { return static_cast<T*>(p_); }
  size_t bytes() const { return bytes_; }
  // The stream whose order the buffer's memory follows; null for a cudaMalloc'ed buffer.
  StreamHandle stream_order() const { return stream_; }

 private:
  void release() noexcept;
  void* p_ = nullptr;
  size_t bytes_ = 0;
  StreamHandle stream_ = nullptr;
};

// While one lives, the DeviceBuffers this thread makes are stream-ordered on `s` (cudaMallocAsync /
// cudaFreeAsync from the device's pool, which keeps freed memory for reuse): making and dropping a
// temporary costs no device-wide synchronisation, as cudaMalloc/cudaFree do, which is what a decode
// step of many small buffers spends its time on otherwise. Only for buffers used on `s` alone, and
// dropped before `s` is destroyed. Scopes nest; the innermost wins.
class StreamOrderedAllocations {
 public:
  explicit StreamOrderedAllocations(const Stream& s);
  ~StreamOrderedAllocations();
  StreamOrderedAllocations(const StreamOrderedAllocations&) = delete;
  StreamOrderedAllocations& operator=(const StreamOrderedAllocations&) = delete;

 private:
  StreamHandle previous_;
};

// While one lives, the DeviceBuffers this thread makes are cudaMalloc'ed again, inside a
// StreamOrderedAllocations scope too: for code that keeps what it makes beyond the scope's stream
// (an observer called from a pass), whose buffers would otherwise be freed in the order of a stream
// that may be gone by then. Scopes nest with StreamOrderedAllocations; the innermost wins.
class PlainAllocations {
 public:
  PlainAllocations();
  ~PlainAllocations();
  PlainAllocations(const PlainAllocations&) = delete;
  PlainAllocations& operator=(const PlainAllocations&) = delete;

 private:
  StreamHandle previous_;
};

// Gives the memory the device's pool keeps for reuse back to the device (waits for the device
// first), so that cudaMemGetInfo and plain allocations see it free again.
void release_pooled_device_memory();

// cudaMallocHost'ed (page-locked) bytes, for asynchronous copies.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes, const std::string& what = "pinned buffer");
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(PinnedBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) {
      const PinnedBuffer old(std::move(*this));  // freed here
      p_ = std::exchange(o.p_, nullptr), bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  template <class T = void>
  T* data() const { return static_cast<T*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

class Event {
 public:
  Event();
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(const Stream& s);
  void synchronize() const;
  // Milliseconds between two recorded events.
  static float elapsed_ms(const Event& start, const Event& end);

 private:
  CUevent_st* e_ = nullptr;
};

// Copies; the async ones are ordered on `s` (host memory must be pinned for true overlap).
void copy_to_device(void* dst, const void* src, size_t bytes, const Stream& s);
void copy_to_host(void* dst, const void* src, size_t bytes, const Stream& s);
void copy_on_device(void* dst, const void* src, size_t bytes, const Stream& s);
// `height` rows of `width` bytes, device to device, rows `src_pitch` and `dst_pitch` bytes apart.
void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width, size_t height, const Stream& s);
void fill_bytes(void* dst, uint8_t value, size_t bytes, const Stream& s);
// Waits for the whole device and raises any error a kernel left behind, naming `what`.
void device_synchronize(const char* what);

}  // namespace fp4kit::cuda
