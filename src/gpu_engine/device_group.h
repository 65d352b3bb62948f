#pragma once
// One prefetched tensor group's stored bytes on the device (each tensor at a 256-byte aligned
// offset, the small ones — global scales — kept on the host too), and the decoding of a stored
// weight of it to F32 on the device.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cuda/runtime.h"
#include "io/tensor_prefetcher.h"
#include "models/stored_weight.h"

namespace fp4kit::gpu_engine {

struct DeviceGroup {
  std::string label;
  cuda::DeviceBuffer arena;
  std::map<std::string, std::pair<size_t, const io::TensorInfo*>, std::less<>> where;
  std::map<std::string, std::vector<std::byte>, std::less<>> small;
  // Numbers every load() of every group in the process: a (device address, generation) pair names
  // one upload's bytes, so caches of decoded weights never mistake a reload, or another resident
  // group, for the bytes they decoded.
  uint64_t generation = 0;
  bool loaded() const { return !label.empty(); }
  size_t device_bytes() const { return arena.bytes(); }

  // Copies the group to the device and waits (the host slot goes back to the reader after this).
  void load(const io::PrefetchedGroup& g, const cuda::Stream& s);
  // The device bytes of `tensor`; Error naming the group when it is not there.
  const std::byte* device(const std::string& tensor, const io::TensorInfo** info = nullptr) const;
  // An F32 scalar tensor's value; InputError when the tensor is not one.
  float scalar(const std::string& tensor) const;
};

// The stored weight `name` (any storage StoredWeights pairs) decoded to F32 on the device, checked
// against the shape the config implies (InputError naming the tensor and both shapes). Asynchronous.
cuda::DeviceBuffer decode_weight_f32(const DeviceGroup& group, const StoredWeights& stored, const std::string& dir,
                                     const std::string& name, const std::vector<int64_t>& shape, const cuda::Stream& s);

// Rows `rows` (device, n of them, each < shape[0]) of the stored 2-d weight `name` decoded to F32
// into out [n, shape[1]]: plain storage is gathered, other storage decoded whole first. The shape is
// checked as decode_weight_f32 checks it. Asynchronous.
void gather_weight_rows_f32(const DeviceGroup& group, const StoredWeights& stored, const std::string& dir,
                            const std::string& name, const std::vector<int64_t>& shape, const int32_t* rows, int64_t n,
                            float* out, const cuda::Stream& s);

}  // namespace fp4kit::gpu_engine
