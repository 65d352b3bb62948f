#include "cuda/check.cuh"
#include "cuda/runtime.h"

#include <atomic>

namespace fp4kit::cuda {

namespace {
std::string mib(size_t bytes) { return std::to_string((bytes + (1u << 20) - 1) >> 20) + " MiB"; }
std::atomic<size_t> g_in_use{0}, g_peak{0}, g_budget{0};
void count_alloc(size_t bytes) {
  const size_t now = g_in_use.fetch_add(bytes) + bytes;
  size_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}
}  // namespace

size_t device_bytes_in_use() { return g_in_use.load(); }
size_t device_bytes_peak() { return g_peak.load(); }
void reset_device_bytes_peak() { g_peak.store(g_in_use.load()); }
void set_device_bytes_budget(size_t bytes) { g_budget.store(bytes); }
size_t device_bytes_budget() { return g_budget.load(); }

Stream::Stream() { check(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate"); }
Stream::~Stream() {
  if (s_) cudaStreamDestroy(s_);
}
void Stream::synchronize(const char* what) const { check(cudaStreamSynchronize(s_), what); }

namespace {
thread_local StreamHandle t_ordered_stream = nullptr;

// The current device's default pool, told on first use to keep what is freed into it (the default
// threshold of 0 hands it back at every synchronisation, which would cost a cudaMalloc again).
cudaMemPool_t ordered_pool() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  cudaMemPool_t pool = nullptr;
  check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
  static std::atomic<bool> configured{false};
  if (!configured.exchange(true)) {
    uint64_t keep = UINT64_MAX;
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "cudaMemPoolSetAttribute");
  }
  return pool;
}

[[noreturn]] void throw_out_of_memory(const std::string& what, size_t bytes) {
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  throw DeviceError("out of GPU memory allocating " + what + ": " + mib(bytes) + " asked, " + mib(free_b) +
                    " free of " + mib(total_b));
}
}  // namespace

void release_pooled_device_memory() {
  check(cudaDeviceSynchronize(), "release pooled device memory: synchronize");
  check(cudaMemPoolTrimTo(ordered_pool(), 0), "cudaMemPoolTrimTo");
}

StreamOrderedAllocations::StreamOrderedAllocations(const Stream& s) : previous_(t_ordered_stream) {
  ordered_pool();  // the pool keeps what the scope's buffers give back
  t_ordered_stream = s.get();
}
StreamOrderedAllocations::~StreamOrderedAllocations() { t_ordered_stream = previous_; }

PlainAllocations::PlainAllocations() : previous_(t_ordered_stream) { t_ordered_stream = nullptr; }
PlainAllocations::~PlainAllocations() { t_ordered_stream = previous_; }

DeviceBuffer::DeviceBuffer(size_t bytes, const std::string& what) : bytes_(bytes) {
  if (bytes == 0) return;
  const size_t budget = g_budget.load(), in_use = g_in_use.load();
  if (budget > 0 && in_use + bytes > budget) {
    bytes_ = 0;
    throw DeviceError("out of the GPU memory budget allocating " + what + ": " + mib(bytes) + " asked, " + mib(in_use) +
                      " in use of " + mib(budget) + " (--gpu-memory)");
  }
  const StreamHandle ordered = t_ordered_stream;
  auto allocate = [&] { return ordered ? cudaMallocAsync(&p_, bytes, ordered) : cudaMalloc(&p_, bytes); };
  cudaError_t err = allocate();
  if (err == cudaErrorMemoryAllocation) {
    // Memory the pool keeps for reuse may be what is missing: give it back and try once more.
    cudaGetLastError();  // clear the error so later calls are not blamed
    p_ = nullptr;
    if (cudaDeviceSynchronize() == cudaSuccess) {
      cudaMemPool_t pool = nullptr;
      int device = 0;
      if (cudaGetDevice(&device) == cudaSuccess && cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess)
        cudaMemPoolTrimTo(pool, 0);
      err = allocate();
    }
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      p_ = nullptr;
      bytes_ = 0;
      throw_out_of_memory(what, bytes);
    }
  }
  if (err != cudaSuccess) {
    p_ = nullptr;
    bytes_ = 0;
    check(err,
          [&] { return std::string(ordered ? "cudaMallocAsync " : "cudaMalloc ") + what + " (" + mib(bytes) + ")"; });
  }
  stream_ = ordered;
  count_alloc(bytes);
}
void DeviceBuffer::release() noexcept {
  if (!p_) return;
  // A buffer that outlived its stream (dropped after an error unwound past the pass that made it)
  // cannot be freed in that order; cudaFree takes pool memory too, after waiting for the device.
  if (!stream_ || cudaFreeAsync(p_, stream_) != cudaSuccess) {
    if (stream_) cudaGetLastError();
    cudaFree(p_);
  }
  g_in_use -= bytes_;
  p_ = nullptr, bytes_ = 0, stream_ = nullptr;
}
DeviceBuffer::~DeviceBuffer() { release(); }
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    release();
    p_ = std::exchange(o.p_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    stream_ = std::exchange(o.stream_, nullptr);
  }
  return *this;
}

PinnedBuffer::PinnedBuffer(size_t bytes, const std::string& what) : bytes_(bytes) {
  if (bytes == 0) return;
  check(cudaMallocHost(&p_, bytes), [&] { return "cudaMallocHost " + what + " (" + mib(bytes) + ")"; });
}
PinnedBuffer::~PinnedBuffer() {
  if (p_) cudaFreeHost(p_);
}

Event::Event() { check(cudaEventCreate(&e_), "cudaEventCreate"); }
Event::~Event() {
  if (e_) cudaEventDestroy(e_);
}
void Event::record(const Stream& s) { check(cudaEventRecord(e_, s.get()), "cudaEventRecord"); }
void Event::synchronize() const { check(cudaEventSynchronize(e_), "cudaEventSynchronize"); }
float Event::elapsed_ms(const Event& start, const Event& end) {
  float ms = 0;
  check(cudaEventElapsedTime(&ms, start.e_, end.e_), "cudaEventElapsedTime");
  return ms;
}

void copy_to_device(void* dst, const void* src, size_t bytes, const Stream& s) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s.get()),
        [&] { return "copy to device (" + mib(bytes) + ")"; });
}
void copy_to_host(void* dst, const void* src, size_t bytes, const Stream& s) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s.get()),
        [&] { return "copy to host (" + mib(bytes) + ")"; });
}
void copy_on_device(void* dst, const void* src, size_t bytes, const Stream& s) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s.get()),
        [&] { return "device copy (" + mib(bytes) + ")"; });
}
void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width, size_t height, const Stream& s) {
  if (!width || !height) return;
  check(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, height, cudaMemcpyDeviceToDevice, s.get()),
        [&] { return "2-d device copy (" + std::to_string(height) + " rows of " + std::to_string(width) + " bytes)"; });
}
void fill_bytes(void* dst, uint8_t value, size_t bytes, const Stream& s) {
  check(cudaMemsetAsync(dst, value, bytes, s.get()), [&] { return "cudaMemset (" + mib(bytes) + ")"; });
}
void device_synchronize(const char* what) { check(cudaDeviceSynchronize(), what); }

}  // namespace fp4kit::cuda
