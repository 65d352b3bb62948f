#include "models/stored_weight.h"

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "formats/bf16.h"
#include "formats/f16.h"
#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "formats/nvfp4.h"
#include "io/quote_name.h"

namespace fp4kit {

namespace {

constexpr std::string_view kPackedWeightSuffix = ".weight_packed";

// [rows, cols] of a plain tensor read as a matrix.
std::pair<size_t, size_t> matrix_dims(const std::vector<int64_t>& shape) {
  if (shape.empty()) return {1, 1};
  size_t rest = 1;
  for (size_t i = 1; i < shape.size(); ++i) rest *= static_cast<size_t>(shape[i]);
  return {static_cast<size_t>(shape[0]), rest};
}

const uint8_t* bytes_of(const io::SafetensorsFile& file, const io::TensorInfo& info) {
  return reinterpret_cast<const uint8_t*>(file.view(info).data());
}

}  // namespace

StoredWeights::StoredWeights(const io::Checkpoint& ckpt) : ckpt_(&ckpt) {
  std::vector<TensorRef> refs;
  for (const std::string& file : ckpt.shard_files())
    for (const io::TensorInfo& t : ckpt.shard(file).tensors()) refs.push_back({t.name, t.dtype, t.shape, file});
  WeightPairing pairing = pair_quantized_weights(refs);
  if (!pairing.problems.empty()) throw InputError(ckpt.dir() + ": " + pairing.problems.front());
  for (const TensorRef& r : refs)
    if (std::find(pairing.plain.begin(), pairing.plain.end(), r.name) != pairing.plain.end())
      entries_[r.name] = Entry{r.name, Storage::Plain, r.shape, {}, {}, false};
  for (const QuantizedWeight& q : pairing.quantized) {
    Entry e{q.weight, q.storage, q.logical_shape, q.scale, {}, false};
    for (const std::string& c : q.companions) {
      if (c.ends_with(".weight_scale_2")) e.global = c;
      if (c.ends_with(".weight_global_scale")) e.global = c, e.global_is_divisor = true;
    }
    std::string name = q.weight;
    if (name.ends_with(kPackedWeightSuffix)) name = name.substr(0, name.size() - kPackedWeightSuffix.size()) + ".weight";
    entries_[name] = std::move(e);
  }
}

const StoredWeights::Entry& StoredWeights::entry(std::string_view tensor) const {
  const auto it = entries_.find(tensor);
  if (it == entries_.end())
    throw InputError(ckpt_->dir() + ": no tensor " + io::quote_name(std::string(tensor)) + " in the checkpoint");
  return it->second;
}

std::pair<const io::SafetensorsFile*, const io::TensorInfo*> StoredWeights::locate(const std::string& tensor) const {
  auto found = ckpt_->find(tensor);
  if (!found.first)
    throw InputError(ckpt_->dir() + ": no tensor " + io::quote_name(tensor) + " in the checkpoint");
  return found;
}

StoredWeights::Layout StoredWeights::layout(std::string_view tensor) const {
  const Entry& e = entry(tensor);
  return {e.name, e.scale, e.global, e.storage, e.shape, e.global_is_divisor};
}

bool StoredWeights::has(std::string_view tensor) const { return entries_.find(tensor) != entries_.end(); }
Storage StoredWeights::storage(std::string_view tensor) const { return entry(tensor).storage; }
std::vector<int64_t> StoredWeights::shape(std::string_view tensor) const { return entry(tensor).shape; }
DType StoredWeights::stored_dtype(std::string_view tensor) const { return locate(entry(tensor).name).second->dtype; }

std::vector<float> StoredWeights::read_f32(std::string_view tensor, size_t row_begin, size_t row_end) const {
  const Entry& e = entry(tensor);
  const auto [file, info] = locate(e.name);
  const std::string where = file->path() + ": tensor " + io::quote_name(e.name);
  const auto [rows, cols] = matrix_dims(e.shape);
  row_end = std::min(row_end, rows);
  if (row_begin > row_end) throw InputError(where + ": rows " + std::to_string(row_begin) + ".." + std::to_string(row_end) + " out of range");
  const size_t n_rows = row_end - row_begin;
  std::vector<float> out(n_rows * cols);
  if (out.empty()) return out;
  const uint8_t* data = bytes_of(*file, *info);

  switch (e.storage) {
    case Storage::Plain: {
      const size_t first = row_begin * cols, n = out.size();
      switch (info->dtype) {
        case DType::F32: std::memcpy(out.data(), data + first * 4, n * 4); break;
        case DType::BF16:
          for (size_t i = 0; i < n; ++i) {
            uint16_t b;
            std::memcpy(&b, data + (first + i) * 2, 2);
            out[i] = BF16{b}.to_float();
          }
          break;
        case DType::F16:
          for (size_t i = 0; i < n; ++i) {
            uint16_t b;
            std::memcpy(&b, data + (first + i) * 2, 2);
            out[i] = F16{b}.to_float();
          }
          break;
        default:
          throw InputError(where + " is " + std::string(dtype_name(info->dtype)) + ", not a float tensor");
      }
      return out;
    }
    case Storage::Fp8BlockE8M0:
    case Storage::Fp8BlockF32: {
      const auto [sfile, sinfo] = locate(e.scale);
      const Fp8BlockShape shape{rows, cols, e.storage == Storage::Fp8BlockE8M0 ? Fp8ScaleKind::E8M0 : Fp8ScaleKind::F32};
      fp8_block_kernels().dequantize_f32(data, bytes_of(*sfile, *sinfo), shape, row_begin, row_end, out.data());
      return out;
    }
    case Storage::Mxfp4: {
      const auto [sfile, sinfo] = locate(e.scale);
      const size_t first = row_begin * cols;
      mxfp4_kernels().dequantize_f32(data + first / 2, bytes_of(*sfile, *sinfo) + first / kMxfp4BlockSize, out.size(),
                                     out.data());
      return out;
    }
    case Storage::Nvfp4: {
      const auto [sfile, sinfo] = locate(e.scale);
      Nvfp4Scaling scaling;
      scaling.numerics = e.global_is_divisor ? Nvfp4Numerics::CompressedTensors : Nvfp4Numerics::ModelOpt;
      scaling.global = read_scalar(e.global);
      const size_t first = row_begin * cols;
      nvfp4_kernels().dequantize(data + first / 2, bytes_of(*sfile, *sinfo) + first / kNvfp4BlockSize, out.size(),
                                 scaling, out.data());
      return out;
    }
  }
  return out;
}

std::vector<int64_t> StoredWeights::read_i64(std::string_view tensor) const {
  const Entry& e = entry(tensor);
  const auto [file, info] = locate(e.name);
  const uint8_t* data = bytes_of(*file, *info);
  const size_t n = static_cast<size_t>(info->numel());
  std::vector<int64_t> out(n);
  if (info->dtype == DType::I64) {
    if (n) std::memcpy(out.data(), data, n * 8);
  } else if (info->dtype == DType::I32) {
    for (size_t i = 0; i < n; ++i) {
      int32_t v;
      std::memcpy(&v, data + i * 4, 4);
      out[i] = v;
    }
  } else {
    throw InputError(file->path() + ": tensor " + io::quote_name(e.name) + " is " + std::string(dtype_name(info->dtype)) +
                     ", not I64 or I32");
  }
  return out;
}

float StoredWeights::read_scalar(std::string_view tensor) const {
  const std::string name(tensor);
  const auto [file, info] = locate(name);
  if (info->dtype != DType::F32 || info->numel() != 1)
    throw InputError(file->path() + ": tensor " + io::quote_name(name) + " is " + std::string(dtype_name(info->dtype)) + " " +
                     io::shape_string(info->shape) + ", not an F32 scalar");
  float v;
  std::memcpy(&v, bytes_of(*file, *info), 4);
  return v;
}

}  // namespace fp4kit
