// A CUDA injection library that writes the device's timeline: every kernel, copy and memset with its
// start and end on the device, and every CUDA runtime/driver call with its start and end on the host
// (CUPTI's activity API; one clock for both). ncu times kernels one at a time with the device
// serialised; this shows what a real run does between them — where the device waits for the host.
//
//   CUDA_INJECTION64_PATH=build-gpu/libcuda_timeline.so FP4KIT_TIMELINE=t.csv fp4kit serve ...
//   bench/timeline_steps.py t.csv
//
// CSV rows: type (K kernel, C copy, S memset, R runtime call, D driver call), start ns, end ns,
// correlation id, name (kernel or API), grid (kernels) or bytes (copies, memsets). Records arrive in
// buffers CUPTI fills; a thread of this library asks for the completed ones every 100 ms (CUPTI's own
// periodic flush returns only full buffers, and a server stopped by a signal may never reach the
// flush at exit), and the rest are written at exit.
#include <cupti.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <mutex>
#include <thread>

namespace {

std::FILE* out = nullptr;
std::mutex out_mutex;
constexpr size_t kBufferBytes = 8u << 20;

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *size = kBufferBytes;
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *max_records = 0;
}

const char* api_name(CUpti_CallbackDomain domain, CUpti_CallbackId id) {
  const char* name = nullptr;
  if (cuptiGetCallbackName(domain, id, &name) != CUPTI_SUCCESS || !name) return "?";
  return name;
}

void write_record(const CUpti_Activity* r) {
  switch (r->kind) {
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
    case CUPTI_ACTIVITY_KIND_KERNEL: {
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(r);
      std::fprintf(out, "K,%llu,%llu,%u,%s,%dx%dx%d\n", static_cast<unsigned long long>(k->start),
                   static_cast<unsigned long long>(k->end), k->correlationId, k->name ? k->name : "?", k->gridX, k->gridY,
                   k->gridZ);
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
      const auto* c = reinterpret_cast<const CUpti_ActivityMemcpy6*>(r);
      std::fprintf(out, "C,%llu,%llu,%u,copy kind %u,%llu\n", static_cast<unsigned long long>(c->start),
                   static_cast<unsigned long long>(c->end), c->correlationId, static_cast<unsigned>(c->copyKind),
                   static_cast<unsigned long long>(c->bytes));
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
      const auto* s = reinterpret_cast<const CUpti_ActivityMemset4*>(r);
      std::fprintf(out, "S,%llu,%llu,%u,memset,%llu\n", static_cast<unsigned long long>(s->start),
                   static_cast<unsigned long long>(s->end), s->correlationId, static_cast<unsigned long long>(s->bytes));
      break;
    }
    case CUPTI_ACTIVITY_KIND_RUNTIME:
    case CUPTI_ACTIVITY_KIND_DRIVER: {
      const auto* a = reinterpret_cast<const CUpti_ActivityAPI*>(r);
      const bool runtime = r->kind == CUPTI_ACTIVITY_KIND_RUNTIME;
      std::fprintf(out, "%c,%llu,%llu,%u,%s,\n", runtime ? 'R' : 'D', static_cast<unsigned long long>(a->start),
                   static_cast<unsigned long long>(a->end), a->correlationId,
                   api_name(runtime ? CUPTI_CB_DOMAIN_RUNTIME_API : CUPTI_CB_DOMAIN_DRIVER_API, a->cbid));
      break;
    }
    default: break;
  }
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  {
    const std::lock_guard<std::mutex> lock(out_mutex);
    CUpti_Activity* record = nullptr;
    while (out && cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) write_record(record);
    if (out) std::fflush(out);
  }
  std::free(buffer);
}

void flush_at_exit() {
  cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  const std::lock_guard<std::mutex> lock(out_mutex);
  if (out) std::fclose(out), out = nullptr;
}

}  // namespace

// Called by the CUDA driver at cuInit when CUDA_INJECTION64_PATH names this library.
extern "C" __attribute__((visibility("default"))) int InitializeInjection() {
  const char* path = std::getenv("FP4KIT_TIMELINE");
  out = std::fopen(path && *path ? path : "cuda-timeline.csv", "w");
  if (!out) {
    std::perror("cuda_timeline: cannot open FP4KIT_TIMELINE");
    return 0;
  }
  std::fprintf(out, "type,start_ns,end_ns,correlation,name,extent\n");
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS) {
    std::fprintf(stderr, "cuda_timeline: CUPTI refused the activity callbacks\n");
    return 0;
  }
  for (CUpti_ActivityKind kind : {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
                                  CUPTI_ACTIVITY_KIND_MEMSET, CUPTI_ACTIVITY_KIND_RUNTIME, CUPTI_ACTIVITY_KIND_DRIVER})
    if (cuptiActivityEnable(kind) != CUPTI_SUCCESS) std::fprintf(stderr, "cuda_timeline: activity kind %d refused\n", kind);
  std::thread([] {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      cuptiActivityFlushAll(0);  // the buffers whose records are all complete, full or not
    }
  }).detach();
  std::atexit(flush_at_exit);
  return 1;
}
