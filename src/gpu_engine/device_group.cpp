#include "gpu_engine/device_group.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "base/error.h"
#include "cuda/elementwise.h"
#include "cuda/weight_codecs.h"
#include "io/quote_name.h"

namespace fp4kit::gpu_engine {

void DeviceGroup::load(const io::PrefetchedGroup& g, const cuda::Stream& s) {
  static std::atomic<uint64_t> loads{0};
  label = g.label();
  generation = ++loads;
  where.clear();
  small.clear();
  size_t bytes = 0;
  for (const io::PrefetchedTensor& t : g.tensors()) {
    where[t.info->name] = {bytes, t.info};
    bytes += (t.bytes.size() + 255) / 256 * 256;
    if (t.bytes.size() <= 16) small[t.info->name].assign(t.bytes.begin(), t.bytes.end());
  }
  arena = {};  // the previous group's bytes go first: one group on the device at a time
  arena = cuda::DeviceBuffer(std::max<size_t>(bytes, 1), "stored tensors of " + label);
  for (const io::PrefetchedTensor& t : g.tensors())
    cuda::copy_to_device(arena.data<std::byte>() + where[t.info->name].first, t.bytes.data(), t.bytes.size(), s);
  s.synchronize("group upload");
}

const std::byte* DeviceGroup::device(const std::string& tensor, const io::TensorInfo** info) const {
  const auto it = where.find(tensor);
  if (it == where.end()) throw Error("GPU forward: tensor " + io::quote_name(tensor) + " is not in " + label);
  if (info) *info = it->second.second;
  return arena.data<std::byte>() + it->second.first;
}

float DeviceGroup::scalar(const std::string& tensor) const {
  const auto it = small.find(tensor);
  const io::TensorInfo* info = nullptr;
  device(tensor, &info);
  if (it == small.end() || info->dtype != DType::F32 || info->numel() != 1)
    throw InputError(label + ": tensor " + io::quote_name(tensor) + " is not an F32 scalar");
  float v;
  std::memcpy(&v, it->second.data(), 4);
  return v;
}

cuda::DeviceBuffer decode_weight_f32(const DeviceGroup& group, const StoredWeights& stored, const std::string& dir,
                                     const std::string& name, const std::vector<int64_t>& shape, const cuda::Stream& s) {
  const StoredWeights::Layout l = stored.layout(name);
  if (l.shape != shape)
    throw InputError(dir + ": tensor " + io::quote_name(name) + " has shape " + io::shape_string(l.shape) +
                     ", the config implies " + io::shape_string(shape));
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  cuda::DeviceBuffer out(static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float), name);
  const io::TensorInfo* info = nullptr;
  const auto* data = reinterpret_cast<const uint8_t*>(group.device(l.weight, &info));
  const size_t rows = shape.empty() ? 1 : static_cast<size_t>(shape[0]);
  const size_t cols = rows ? static_cast<size_t>(n) / rows : 0;
  switch (l.storage) {
    case Storage::Plain:
      cuda::widen_to_f32(data, info->dtype, n, out.data<float>(), s.get());
      break;
    case Storage::Fp8BlockE8M0:
    case Storage::Fp8BlockF32: {
      const Fp8BlockShape fs{rows, cols, l.storage == Storage::Fp8BlockE8M0 ? Fp8ScaleKind::E8M0 : Fp8ScaleKind::F32};
      cuda::fp8_block_dequantize_f32(data, group.device(l.scale), fs, 0, rows, out.data<float>(), s.get());
      break;
    }
    case Storage::Mxfp4:
      cuda::mxfp4_dequantize_f32(data, reinterpret_cast<const uint8_t*>(group.device(l.scale)), static_cast<size_t>(n),
                                 out.data<float>(), s.get());
      break;
    case Storage::Nvfp4: {
      Nvfp4Scaling scaling;
      scaling.numerics = l.global_is_divisor ? Nvfp4Numerics::CompressedTensors : Nvfp4Numerics::ModelOpt;
      scaling.global = group.scalar(l.global);
      cuda::nvfp4_dequantize_f32(data, reinterpret_cast<const uint8_t*>(group.device(l.scale)), static_cast<size_t>(n),
                                 scaling, out.data<float>(), s.get());
      break;
    }
  }
  return out;
}

void gather_weight_rows_f32(const DeviceGroup& group, const StoredWeights& stored, const std::string& dir,
                            const std::string& name, const std::vector<int64_t>& shape, const int32_t* rows, int64_t n,
                            float* out, const cuda::Stream& s) {
  const StoredWeights::Layout l = stored.layout(name);
  if (l.storage != Storage::Plain || shape.size() != 2 || l.shape != shape) {
    const cuda::DeviceBuffer whole = decode_weight_f32(group, stored, dir, name, shape, s);
    cuda::gather_rows(whole.data<float>(), rows, n, shape[1], out, s.get());
    return;
  }
  const io::TensorInfo* info = nullptr;
  const std::byte* data = group.device(l.weight, &info);
  cuda::gather_rows_widened(data, info->dtype, rows, n, shape[1], out, s.get());
}

}  // namespace fp4kit::gpu_engine
