#pragma once
// The arithmetic of the GPU forward pass's linear products (gpu_engine/gpu_linear.h says what each
// computes): BF16 operands with F32 accumulation, as the serving engines compute, or full F32 for checks.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace fp4kit::gpu_engine {

enum class Precision : uint8_t { Bf16, F32 };

// BF16 products of at least this many rows read the weight as BF16 values through cuBLASLt where
// its stored form decodes to BF16 exactly (BF16, MXFP4, FP8 blocks with E8M0 scales, NVFP4's block
// values with its global scale as the product's alpha): decoding it once costs less than decoding it
// in every tile at this size, and the product is the same (the same BF16 values, F32 sums in another
// order). Fewer rows go through the weight GEMMs.
inline constexpr int64_t kDecodeOnceRows = 1024;
// The same for the routed experts of a layer, by the rows an expert gets on average (T·k / E).
inline constexpr int64_t kDecodeOnceExpertRows = 128;

inline const char* precision_name(Precision p) { return p == Precision::Bf16 ? "bf16" : "f32"; }

inline std::optional<Precision> parse_precision(std::string_view s) {
  if (s == "bf16") return Precision::Bf16;
  if (s == "f32") return Precision::F32;
  return std::nullopt;
}

// A command's --precision: empty (the default: bf16 on the GPU, f32 on the CPU), bf16 (GPU only) or
// f32. InputError (exit 2) naming the flag otherwise.
inline Precision resolve_precision(const std::string& flag, bool gpu) {
  if (flag.empty()) return gpu ? Precision::Bf16 : Precision::F32;
  const std::optional<Precision> p = parse_precision(flag);
  if (!p) throw InputError("--precision " + flag + ": unknown (bf16, f32)");
  if (*p == Precision::Bf16 && !gpu) throw InputError("--precision bf16: the CPU engine computes in f32 only (use --device cuda)");
  return *p;
}

}  // namespace fp4kit::gpu_engine
