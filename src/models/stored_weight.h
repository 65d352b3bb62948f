#pragma once
// Read any tensor of a checkpoint as f32, whatever its storage: plain F32/BF16/F16, FP8 128x128
// blocks (E8M0 or F32 scales), MXFP4 (DeepSeek V4 experts), or NVFP4 in ModelOpt's layout
// (`weight`, `weight_scale`, `weight_scale_2`) or compressed-tensors' (`weight_packed`,
// `weight_scale`, `weight_global_scale`). Readers that compute with weights (the forward pass, the
// verifier) go through this one interface so that every storage dequantizes the same way.
//
// Names are the weight names: "layers.0.attn.wq_a.weight". A compressed-tensors weight is also found
// under its `.weight` name. Only headers are read up front; each read_f32 maps and decodes just the
// rows asked for, so memory stays bounded by what the caller keeps.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "io/checkpoint_index.h"
#include "models/deepseek_v4.h"
#include "models/quantized_weights.h"

namespace fp4kit {

class StoredWeights {
 public:
  // Pairs weights with their scales from the headers; InputError naming file and tensor for every
  // pairing problem (a weight without its scale, a scale of the wrong shape ...). `ckpt` must
  // outlive this object.
  explicit StoredWeights(const io::Checkpoint& ckpt);

  bool has(std::string_view tensor) const;
  Storage storage(std::string_view tensor) const;             // InputError if absent
  std::vector<int64_t> shape(std::string_view tensor) const;  // logical: [N, K] for packed FP4
  DType stored_dtype(std::string_view tensor) const;          // the weight tensor's own dtype

  // Rows [row_begin, min(row_end, rows)) of the logical tensor as f32 (a tensor of rank != 2 is
  // read as [dim0, rest]; a 0-d tensor as one row of one element). Exactly the official dequant:
  // FP8 f32(e4m3) * block scale, MXFP4 E2M1 * 2^(e-127), NVFP4 E2M1 * E4M3 * global as the
  // layout's producer defines it. InputError naming file and tensor if absent or not a float.
  std::vector<float> read_f32(std::string_view tensor, size_t row_begin = 0, size_t row_end = SIZE_MAX) const;
  // I64 or I32 plain tensors (e.g. `tid2eid`), widened to int64.
  std::vector<int64_t> read_i64(std::string_view tensor) const;

  // The F32 scalar a tensor holds (e.g. an NVFP4 `input_scale`); InputError if absent or not a scalar.
  float read_scalar(std::string_view tensor) const;

  // Which checkpoint tensors hold a weight, for readers that decode the stored bytes themselves (the
  // GPU engine): the weight tensor as stored, its block-scale tensor and NVFP4 global-scale tensor
  // ("" where the storage has none). InputError if absent.
  struct Layout {
    std::string weight, scale, global;
    Storage storage = Storage::Plain;
    std::vector<int64_t> shape;        // logical
    bool global_is_divisor = false;    // compressed-tensors' weight_global_scale
  };
  Layout layout(std::string_view tensor) const;

 private:
  struct Entry {
    std::string name;            // the weight tensor as stored
    Storage storage = Storage::Plain;
    std::vector<int64_t> shape;  // logical
    std::string scale;           // block scale tensor (quantized storages)
    std::string global;          // NVFP4 per-tensor scale tensor
    bool global_is_divisor = false;  // compressed-tensors' weight_global_scale
  };
  const Entry& entry(std::string_view tensor) const;
  std::pair<const io::SafetensorsFile*, const io::TensorInfo*> locate(const std::string& tensor) const;

  const io::Checkpoint* ckpt_;
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace fp4kit
