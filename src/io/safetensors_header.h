#pragma once
// The JSON header at the start of every safetensors file: parsed and validated without any I/O, so
// that the same code serves files, memory and the fuzzer.
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON (padded with spaces), data section.
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/tensor_info.h"

namespace fp4kit::io {

// The format's own limit (the reference implementation refuses larger headers).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;              // sorted by begin offset
  std::map<std::string, std::string> metadata;  // "__metadata__" (string -> string only)
  uint64_t data_offset = 0;                     // 8 + header length
};

// `file_prefix` holds at least the first 8 bytes and the whole header (all of it that the file has,
// when the file is shorter); `file_size` is the total file size; `label` (usually the path) starts
// every error message. Every violation of the format is an InputError with a one-line message that
// names the tensor where there is one. Gaps between tensors and bytes after the last one are allowed.
SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file_prefix, uint64_t file_size,
                                           std::string_view label);

// The header length that the first 8 bytes announce (little-endian), for readers deciding how much to read.
uint64_t safetensors_header_length(std::span<const std::byte, 8> first_bytes);

}  // namespace fp4kit::io
