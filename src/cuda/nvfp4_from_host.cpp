#include "cuda/nvfp4_from_host.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "base/error.h"
#include "cuda/runtime.h"
#include "cuda/weight_codecs.h"

namespace fp4kit::cuda {

namespace {

// Elements per piece: 64 MiB of F32 source, a multiple of the 16-element block.
constexpr size_t kPieceElements = size_t{16} << 20;

size_t element_bytes(const FloatSpan& src) { return dtype_bits(src.dtype) / 8; }

// One piece's buffers: the source staged in pinned memory and on the device.
struct Slot {
  Slot(size_t bytes, const std::string& what)
      : host_in(bytes, what + " staging"), device_in(bytes, what + " source piece") {}
  Stream stream;
  PinnedBuffer host_in;
  DeviceBuffer device_in;
  size_t begin = 0, count = 0;  // the piece in flight (count 0: none)
};

std::array<Slot, 2> make_slots(const FloatSpan& src, const std::string& what) {
  const size_t bytes = std::min(src.size, kPieceElements) * element_bytes(src);
  return {Slot(bytes, what), Slot(bytes, what)};
}

// A piece's results on the device and staged in pinned memory.
struct Results {
  explicit Results(size_t elements)
      : packed(elements / 2, "nvfp4 packed piece"),
        scales(elements / kNvfp4BlockSize, "nvfp4 scales piece"),
        host_packed(elements / 2, "nvfp4 packed staging"),
        host_scales(elements / kNvfp4BlockSize, "nvfp4 scales staging") {}
  DeviceBuffer packed, scales;
  PinnedBuffer host_packed, host_scales;
};

// Stages piece [begin, begin+count) of src into the slot and starts its copy to the device.
void stage(Slot& slot, const FloatSpan& src, size_t begin, size_t count) {
  const size_t width = element_bytes(src);
  std::memcpy(slot.host_in.data(), static_cast<const uint8_t*>(src.data) + begin * width, count * width);
  copy_to_device(slot.device_in.data(), slot.host_in.data(), count * width, slot.stream);
  slot.begin = begin;
  slot.count = count;
}

}  // namespace

float nvfp4_amax_from_host(FloatSpan src) {
  if (src.size == 0) return 0.0f;
  auto slots = make_slots(src, "nvfp4 amax");
  std::array<DeviceBuffer, 2> amax = {DeviceBuffer(sizeof(float), "amax"), DeviceBuffer(sizeof(float), "amax")};
  for (size_t i = 0; i < 2; ++i) fill_bytes(amax[i].data(), 0, sizeof(float), slots[i].stream);
  for (size_t begin = 0, piece = 0; begin < src.size; begin += kPieceElements, ++piece) {
    Slot& slot = slots[piece % 2];
    slot.stream.synchronize("nvfp4 amax piece");  // its staging buffer is free again
    stage(slot, src, begin, std::min(kPieceElements, src.size - begin));
    nvfp4_amax(slot.device_in.data(), src.dtype, slot.count, amax[piece % 2].data<float>(), slot.stream.get(), true);
  }
  std::array<float, 2> result{};
  for (size_t i = 0; i < 2; ++i) {
    copy_to_host(&result[i], amax[i].data(), sizeof(float), slots[i].stream);
    slots[i].stream.synchronize("nvfp4 amax");
  }
  // As nvfp4_ref::amax: NaN wins, as its quiet NaN.
  if (std::isnan(result[0]) || std::isnan(result[1])) return std::numeric_limits<float>::quiet_NaN();
  return std::max(result[0], result[1]);
}

void nvfp4_quantize_from_host(FloatSpan src, const Nvfp4Scaling& scaling, uint8_t* packed, uint8_t* scales) {
  if (src.size % kNvfp4BlockSize != 0)
    throw InputError("nvfp4 quantize: " + std::to_string(src.size) + " elements, not a multiple of 16");
  if (src.size == 0) return;
  auto slots = make_slots(src, "nvfp4 quantize");
  const size_t max_piece = std::min(src.size, kPieceElements);
  std::array<Results, 2> results = {Results(max_piece), Results(max_piece)};
  // Waits for the slot's piece and moves its results to the caller's memory.
  auto drain = [&](size_t i) {
    Slot& slot = slots[i];
    slot.stream.synchronize("nvfp4 quantize piece");
    if (slot.count == 0) return;
    std::memcpy(packed + slot.begin / 2, results[i].host_packed.data(), slot.count / 2);
    std::memcpy(scales + slot.begin / kNvfp4BlockSize, results[i].host_scales.data(), slot.count / kNvfp4BlockSize);
    slot.count = 0;
  };
  for (size_t begin = 0, piece = 0; begin < src.size; begin += kPieceElements, ++piece) {
    const size_t i = piece % 2;
    drain(i);
    Slot& slot = slots[i];
    Results& r = results[i];
    stage(slot, src, begin, std::min(kPieceElements, src.size - begin));
    nvfp4_quantize(slot.device_in.data(), src.dtype, slot.count, scaling, r.packed.data<uint8_t>(),
                   r.scales.data<uint8_t>(), slot.stream.get());
    copy_to_host(r.host_packed.data(), r.packed.data(), slot.count / 2, slot.stream);
    copy_to_host(r.host_scales.data(), r.scales.data(), slot.count / kNvfp4BlockSize, slot.stream);
  }
  drain(0);
  drain(1);
}

}  // namespace fp4kit::cuda
