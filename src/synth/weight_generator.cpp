#include "synth/weight_generator.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "base/error.h"
#include "base/parallel.h"
#include "formats/bf16.h"
#include "formats/f16.h"
#include "formats/fp8_block.h"
#include "formats/mxfp4.h"
#include "io/tensor_info.h"
#include "synth/linear_weight.h"
#include "synth/random_fill.h"

namespace fp4kit::synth {

namespace {

constexpr size_t kElementsPerPiece = size_t{1} << 18;  // work per parallel piece: ~1 MB of f32

// A per-thread buffer of at least n floats, reused across calls: fresh multi-megabyte vectors would
// fault their pages in again for every slab.
float* scratch_floats(size_t n) {
  thread_local std::vector<float> scratch;
  if (scratch.size() < n) scratch.resize(n);
  return scratch.data();
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// How a plain tensor's values are drawn.
struct Recipe {
  enum Kind { Linear, Normal, Uniform, HashTable } kind = Normal;
  float a = 0, b = 1;  // Normal: mean a, std b; Uniform: [a, b)
};

Recipe recipe_for(const TensorSpec& s) {
  const int64_t cols = s.shape.size() == 2 ? s.shape[1] : 1;
  switch (s.role) {
    case TensorRole::Embedding:
    case TensorRole::Head: return {Recipe::Normal, 0.0f, 0.02f};
    case TensorRole::Norm: return {Recipe::Normal, 1.0f, 0.1f};
    case TensorRole::HyperConnection:
      if (ends_with(s.name, "_scale")) return {Recipe::Uniform, 0.3f, 1.5f};
      if (ends_with(s.name, "_base")) return {Recipe::Normal, 0.0f, 0.5f};
      return {Recipe::Normal, 0.0f, static_cast<float>(0.7 / std::sqrt(static_cast<double>(std::max<int64_t>(cols, 1))))};
    case TensorRole::AttentionSink: return {Recipe::Normal, 0.0f, 1.0f};
    case TensorRole::CompressorApe: return {Recipe::Normal, 0.0f, 0.5f};
    case TensorRole::RouterBias: return {Recipe::Normal, 0.0f, 0.1f};
    case TensorRole::HashTable: return {Recipe::HashTable};
    default: break;
  }
  // Projections stored unquantized (compressor, indexer weights_proj, router) and anything else
  // that is a matrix: a linear weight.
  if (s.shape.size() == 2) return {Recipe::Linear};
  return {Recipe::Normal, 0.0f, 0.02f};
}

// Values in the tensor's dtype, little-endian.
void store(DType dtype, const float* values, size_t n, std::byte* out) {
  switch (dtype) {
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t bits = BF16::from_float(values[i]).bits;
        std::memcpy(out + 2 * i, &bits, 2);
      }
      return;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t bits = F16::from_float(values[i]).bits;
        std::memcpy(out + 2 * i, &bits, 2);
      }
      return;
    case DType::F32: std::memcpy(out, values, 4 * n); return;
    default: throw Error("synth: cannot store floating-point values as " + std::string(dtype_name(dtype)));
  }
}

// Row r of tid2eid: k distinct experts in [0, experts), in random order (Floyd's sampling, then
// a Fisher-Yates shuffle; 2k words of the row's own counters, no rejection).
void hash_table_row(CounterRng rng, int64_t row, int64_t k, int64_t experts, int64_t* out) {
  const uint64_t base = static_cast<uint64_t>(row) * 2 * static_cast<uint64_t>(k);
  int64_t n = 0;
  for (int64_t j = experts - k; j < experts; ++j) {
    const auto t = static_cast<int64_t>(uniform_below(rng.bits(base + static_cast<uint64_t>(n)), static_cast<uint64_t>(j + 1)));
    const bool taken = std::find(out, out + n, t) != out + n;
    out[n++] = taken ? j : t;
  }
  for (int64_t i = k - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(uniform_below(rng.bits(base + static_cast<uint64_t>(k + i)), static_cast<uint64_t>(i + 1)));
    std::swap(out[i], out[j]);
  }
}

// The logical [rows, cols] of a quantized weight: MXFP4 packs two columns per byte.
std::pair<size_t, size_t> logical_shape(const TensorSpec& w) {
  if (w.shape.size() != 2) throw Error("synth: quantized weight '" + w.name + "' is not a matrix");
  const auto rows = static_cast<size_t>(w.shape[0]), stored = static_cast<size_t>(w.shape[1]);
  return {rows, w.storage == Storage::Mxfp4 ? 2 * stored : stored};
}

}  // namespace

WeightGenerator::WeightGenerator(const DeepseekV4Config& config, uint64_t seed, unsigned threads)
    : root_(CounterRng{seed}.child("fp4kit synth")), n_routed_experts_(config.n_routed_experts), threads_(threads) {}

void WeightGenerator::plain_rows(const TensorSpec& spec, int64_t row_begin, int64_t row_end,
                                 std::span<std::byte> out) const {
  const io::StorageSize size = io::storage_size(spec.dtype, spec.shape);
  if (!size.problem.empty()) throw Error("synth: tensor '" + spec.name + "': " + size.problem);
  const int64_t rows = spec.shape.empty() ? 1 : spec.shape[0];
  if (row_begin < 0 || row_begin > row_end || row_end > rows)
    throw Error("synth: tensor '" + spec.name + "': rows out of range");
  if (rows == 0 || row_begin == row_end) return;
  const auto row_len = static_cast<size_t>(size.numel / rows);
  const size_t width = dtype_bits(spec.dtype) / 8;
  if (out.size() != static_cast<size_t>(row_end - row_begin) * row_len * width)
    throw Error("synth: tensor '" + spec.name + "': output buffer has the wrong size");
  if (row_len == 0) return;

  const CounterRng rng = tensor_rng(spec.name);
  const Recipe recipe = recipe_for(spec);
  const size_t n_rows = static_cast<size_t>(row_end - row_begin);
  const size_t grain = std::max<size_t>(1, kElementsPerPiece / row_len);

  if (recipe.kind == Recipe::HashTable) {
    if (spec.dtype != DType::I64) throw Error("synth: hash table '" + spec.name + "' is not I64");
    const auto k = static_cast<int64_t>(row_len);
    if (k > n_routed_experts_)
      throw InputError("synth: tensor '" + spec.name + "' needs " + std::to_string(k) + " distinct experts of " +
                       std::to_string(n_routed_experts_));
    parallel_for(n_rows, grain, threads_, [&](size_t begin, size_t end) {
      std::vector<int64_t> row(row_len);
      for (size_t i = begin; i < end; ++i) {
        hash_table_row(rng, row_begin + static_cast<int64_t>(i), k, n_routed_experts_, row.data());
        std::memcpy(out.data() + i * row_len * 8, row.data(), row_len * 8);
      }
    });
    return;
  }

  if (recipe.kind == Recipe::Linear) {
    const LinearWeight linear(rng, static_cast<int64_t>(row_len));
    parallel_for(n_rows, grain, threads_, [&](size_t begin, size_t end) {
      const size_t n = (end - begin) * row_len;
      float* values = scratch_floats(n);
      linear.rows(row_begin + static_cast<int64_t>(begin), row_begin + static_cast<int64_t>(end), values);
      store(spec.dtype, values, n, out.data() + begin * row_len * width);
    });
    return;
  }

  const uint64_t first = static_cast<uint64_t>(row_begin) * row_len;
  parallel_for(n_rows * row_len, kElementsPerPiece, threads_, [&](size_t begin, size_t end) {
    float* values = scratch_floats(end - begin);
    if (recipe.kind == Recipe::Uniform) {
      for (size_t i = begin; i < end; ++i)
        values[i - begin] = recipe.a + (recipe.b - recipe.a) * uniform_open(rng.bits(first + i));
    } else {
      random_fill()(Distribution::NormalApprox, rng, first + begin, end - begin, values);
      for (size_t i = 0; i < end - begin; ++i) values[i] = recipe.a + recipe.b * values[i];
    }
    store(spec.dtype, values, end - begin, out.data() + begin * width);
  });
}

QuantizedWeight WeightGenerator::quantized(const TensorSpec& weight, const TensorSpec& scale) const {
  // Plain variables, not a structured binding: lambdas below capture them (clang 14 cannot).
  const std::pair<size_t, size_t> rows_cols = logical_shape(weight);
  const size_t rows = rows_cols.first, cols = rows_cols.second;
  const io::StorageSize weight_size = io::storage_size(weight.dtype, weight.shape);
  const io::StorageSize scale_size = io::storage_size(scale.dtype, scale.shape);
  if (!weight_size.problem.empty() || !scale_size.problem.empty())
    throw Error("synth: quantized weight '" + weight.name + "' has no byte size");
  QuantizedWeight q;
  q.weight.resize(weight_size.nbytes);
  q.scale.resize(scale_size.nbytes);
  if (rows == 0 || cols == 0) return q;

  const LinearWeight linear(tensor_rng(weight.name), static_cast<int64_t>(cols));
  auto* w = reinterpret_cast<uint8_t*>(q.weight.data());
  auto* s = reinterpret_cast<uint8_t*>(q.scale.data());

  if (weight.storage == Storage::Mxfp4) {
    if (cols % kMxfp4BlockSize != 0) throw Error("synth: MXFP4 weight '" + weight.name + "': columns not a multiple of 32");
    const size_t slab = std::max<size_t>(1, kElementsPerPiece / cols);
    const auto& mx = mxfp4_kernels();
    parallel_for(rows, slab, threads_, [&](size_t r0, size_t r1) {
      const size_t n = (r1 - r0) * cols;
      float* values = scratch_floats(n);
      linear.rows(static_cast<int64_t>(r0), static_cast<int64_t>(r1), values);
      mx.quantize(FloatSpan{values, DType::F32, n}, w + r0 * cols / 2, s + r0 * cols / kMxfp4BlockSize);
    });
    return q;
  }

  // FP8 blocks, 128 rows at a time (a whole row of blocks).
  const bool e8m0 = weight.storage != Storage::Fp8BlockF32;
  const size_t scale_cols = fp8_scale_dim(cols), scale_width = e8m0 ? 1 : 4;
  const bool repack = weight.role == TensorRole::RoutedExpert && e8m0;
  if (repack && cols % kMxfp4BlockSize != 0)
    throw Error("synth: FP8 expert '" + weight.name + "': columns not a multiple of 32");
  const auto& fp8 = fp8_block_kernels();
  const auto& mx = mxfp4_kernels();
  parallel_for(rows, kFp8BlockSize, threads_, [&](size_t r0, size_t r1) {
    const size_t n = (r1 - r0) * cols;
    float* values = scratch_floats(n);
    linear.rows(static_cast<int64_t>(r0), static_cast<int64_t>(r1), values);
    uint8_t* scales_out = s + (r0 / kFp8BlockSize) * scale_cols * scale_width;
    if (repack) {
      // The experts of the FP4 checkpoint with this seed, through DeepSeek's FP4 -> FP8 cast.
      std::vector<uint8_t> packed(n / 2), mx_scales(n / kMxfp4BlockSize);
      mx.quantize(FloatSpan{values, DType::F32, n}, packed.data(), mx_scales.data());
      mxfp4_to_fp8_block(packed.data(), mx_scales.data(), r1 - r0, cols, w + r0 * cols, scales_out);
    } else {
      const Fp8BlockShape shape{r1 - r0, cols, e8m0 ? Fp8ScaleKind::E8M0 : Fp8ScaleKind::F32};
      fp8.quantize(FloatSpan{values, DType::F32, n}, shape, w + r0 * cols, scales_out);
    }
  });
  return q;
}

}  // namespace fp4kit::synth
