#include "gpu_engine/gpu_linear.h"

#include <algorithm>
#include <utility>

#include "base/error.h"
#include "cuda/element_encoders.h"
#include "cuda/gemm_weight_bf16.h"
#include "io/quote_name.h"

namespace fp4kit::gpu_engine {
namespace {

size_t bytes_per_row(cuda::WeightFormat f, int64_t k) {
  switch (f) {
    case cuda::WeightFormat::Nvfp4:
    case cuda::WeightFormat::Mxfp4: return static_cast<size_t>(k / 2);
    case cuda::WeightFormat::Fp8Block: return static_cast<size_t>(k);
    case cuda::WeightFormat::Bf16: return static_cast<size_t>(k) * 2;
  }
  return 0;
}

// Rows [row0, row0 + rows) of a weight whose row blocks can be read on their own (checked when made).
cuda::GemmWeight row_slice(const cuda::GemmWeight& w, int64_t row0, int64_t rows) {
  cuda::GemmWeight s = w;
  s.n = rows;
  if (row0 == 0) return s;
  s.data = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(row0) * bytes_per_row(w.format, w.k);
  switch (w.format) {
    case cuda::WeightFormat::Nvfp4: s.scales = static_cast<const uint8_t*>(w.scales) + row0 * (w.k / 16); break;
    case cuda::WeightFormat::Mxfp4: s.scales = static_cast<const uint8_t*>(w.scales) + row0 * (w.k / 32); break;
    case cuda::WeightFormat::Fp8Block:
      s.scales = static_cast<const uint8_t*>(w.scales) +
                 (row0 / 128) * ((w.k + 127) / 128) * (w.fp8_scales_f32 ? 4 : 1);
      break;
    case cuda::WeightFormat::Bf16: break;
  }
  return s;
}

}  // namespace

GpuLinear::GpuLinear(Precision precision, const DeviceGroup& group, const StoredWeights& stored, std::string dir,
                     const cuda::Stream& stream, int64_t decode_once_rows)
    : precision_(precision), group_(group), stored_(stored), dir_(std::move(dir)), stream_(stream),
      decode_once_rows_(decode_once_rows) {}

float* GpuLinear::scratch_f32(cuda::DeviceBuffer& b, int64_t n, const char* what) {
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float);
  if (b.bytes() < bytes) {
    stream_.synchronize(what);  // the old buffer may still be read
    b = cuda::DeviceBuffer(bytes, what);
  }
  return b.data<float>();
}

LinearWeight GpuLinear::weight(const std::string& name, int64_t n, int64_t k, int64_t row_block) {
  LinearWeight w;
  w.name = name, w.n = n, w.k = k;
  if (precision_ == Precision::F32) return weight_f32(name, n, k);
  if (const auto it = known_.find(name); it != known_.end()) {
    const Known& kw = it->second;
    if (kw.generation == group_.generation && kw.n == n && kw.k == k && kw.row_block == row_block) {
      w.stored = kw.stored;
      return w;
    }
  }
  const StoredWeights::Layout l = stored_.layout(name);
  if (l.shape != std::vector<int64_t>{n, k})
    throw InputError(dir_ + ": tensor " + io::quote_name(name) + " has shape " + io::shape_string(l.shape) +
                     ", the config implies " + io::shape_string({n, k}));
  const io::TensorInfo* info = nullptr;
  const void* data = group_.device(l.weight, &info);
  cuda::GemmWeight& g = w.stored;
  g.n = n, g.k = k, g.data = data;
  bool readable = true;
  switch (l.storage) {
    case Storage::Plain:
      g.format = cuda::WeightFormat::Bf16;
      readable = info->dtype == DType::BF16;
      break;
    case Storage::Fp8BlockE8M0:
    case Storage::Fp8BlockF32:
      g.format = cuda::WeightFormat::Fp8Block;
      g.scales = group_.device(l.scale);
      g.fp8_scales_f32 = l.storage == Storage::Fp8BlockF32;
      readable = row_block % 128 == 0;
      break;
    case Storage::Mxfp4:
      g.format = cuda::WeightFormat::Mxfp4;
      g.scales = group_.device(l.scale);
      break;
    case Storage::Nvfp4:
      g.format = cuda::WeightFormat::Nvfp4;
      g.scales = group_.device(l.scale);
      // compressed-tensors stores the divisor: value = e2m1 · e4m3 / global (here its reciprocal
      // multiplies, which may differ from the division by one F32 rounding).
      g.global_scale = l.global_is_divisor ? 1.0f / group_.scalar(l.global) : group_.scalar(l.global);
      break;
  }
  const int64_t k_multiple = g.format == cuda::WeightFormat::Mxfp4 ? 32 : 16;
  if (k % k_multiple != 0) readable = false;
  if (row_block > 0 && (bytes_per_row(g.format, k) * static_cast<size_t>(row_block)) % 16 != 0) readable = false;
  if (readable) {
    // The group's bytes are written only by its upload, which waited for them: a product may start
    // reading them while the kernel before it still runs (cuda/dependent_launch.cuh).
    g.read_early = true;
    known_[name] = Known{group_.generation, n, k, row_block, g};
    return w;
  }
  // A BF16 copy: decoded in F32 (exact) and rounded once.
  const cuda::DeviceBuffer f = decode_weight_f32(group_, stored_, dir_, name, {n, k}, stream_);
  w.owned = cuda::DeviceBuffer(static_cast<size_t>(n * k) * 2, name + " (BF16)");
  cuda::encode_elements(f.data<float>(), static_cast<size_t>(n * k), cuda::ElementEncoding::BF16,
                        w.owned.data<uint16_t>(), stream_.get());
  stream_.synchronize("BF16 weight copy");  // f dies here
  g = cuda::GemmWeight{};
  g.format = cuda::WeightFormat::Bf16;
  g.n = n, g.k = k, g.data = w.owned.data();
  w.dense = k % 16 != 0;
  return w;
}

LinearWeight GpuLinear::weight_f32(const std::string& name, int64_t n, int64_t k) {
  LinearWeight w;
  w.name = name, w.n = n, w.k = k, w.f32 = true;
  w.owned = decode_weight_f32(group_, stored_, dir_, name, {n, k}, stream_);
  return w;
}

const uint16_t* GpuLinear::bf16_values(const LinearWeight& w) {
  const cuda::GemmWeight& g = w.stored;
  if (w.dense || w.f32 || !cuda::decodes_to_bf16_exactly(g)) return nullptr;
  if (g.format == cuda::WeightFormat::Bf16) return static_cast<const uint16_t*>(g.data);
  if (w_bf16_of_ == g.data && w_bf16_generation_ == group_.generation) return w_bf16_.data<uint16_t>();
  const size_t n = static_cast<size_t>(g.n) * static_cast<size_t>(g.k);
  if (w_bf16_.bytes() < n * 2) {
    stream_.synchronize("BF16 weight scratch");  // the old buffer may still be read
    w_bf16_ = cuda::DeviceBuffer(n * 2, "BF16 decoded weight");
  }
  // Ordered after the products that read the previous weight (one stream).
  cuda::gemm_weight_bf16(g, w_bf16_.data<uint16_t>(), stream_.get());
  w_bf16_of_ = g.data, w_bf16_generation_ = group_.generation;
  return w_bf16_.data<uint16_t>();
}

const uint16_t* GpuLinear::to_bf16(const float* x, int64_t ldx, int64_t m, int64_t k) {
  const int64_t n = m * k;
  const size_t need = static_cast<size_t>(std::max<int64_t>(n, 1)) * 2;
  if (x_bf16_.bytes() < need) {
    stream_.synchronize("BF16 input scratch");  // the old buffer may still be read
    x_bf16_ = cuda::DeviceBuffer(need, "BF16 linear input");
  }
  if (ldx != k) {
    float* dense = scratch_f32(x_dense_, n, "dense linear input");
    cuda::copy_2d(dense, static_cast<size_t>(k) * 4, x, static_cast<size_t>(ldx) * 4, static_cast<size_t>(k) * 4,
                  static_cast<size_t>(m), stream_);
    x = dense;
  }
  if (n > 0) cuda::encode_elements(x, static_cast<size_t>(n), cuda::ElementEncoding::BF16, x_bf16_.data<uint16_t>(), stream_.get());
  return x_bf16_.data<uint16_t>();
}

void GpuLinear::apply(const float* x, int64_t ldx, const LinearWeight& w, float* y, int64_t ldy, int64_t m, int64_t row0,
                      int64_t rows, const uint16_t* x_bf16) {
  if (rows < 0) rows = w.n;
  if (row0 < 0 || row0 + rows > w.n)
    throw Error("GPU linear " + io::quote_name(w.name) + ": rows [" + std::to_string(row0) + ", " +
                std::to_string(row0 + rows) + ") outside its " + std::to_string(w.n));
  if (m == 0 || rows == 0) return;
  if (w.f32) {
    gemm_.f32_gemm(x, ldx, w.owned.data<float>() + row0 * w.k, y, ldy, m, rows, w.k, stream_.get());
    return;
  }
  // One row is dense whatever its stride: no copy in or out.
  const uint16_t* xb = x_bf16 ? x_bf16 : to_bf16(x, m == 1 ? w.k : ldx, m, w.k);
  float* out = ldy == rows || m == 1 ? y : scratch_f32(y_dense_, m * rows, "dense linear output");
  // A BF16 weight goes to cuBLAS at any m: at m = 1 it streams a large one (the head) at the copy
  // rate, where the decode kernels' BF16 path does not.
  const bool plain_bf16 = !w.dense && w.stored.format == cuda::WeightFormat::Bf16;
  const uint16_t* values = m >= decode_once_rows_ || plain_bf16 ? bf16_values(w) : nullptr;
  if (w.dense)
    gemm_.bf16_gemm(xb, w.owned.data<uint16_t>() + row0 * w.k, out, cuda::GemmOutput::F32, m, rows, w.k, stream_.get());
  else if (values)
    gemm_.bf16_gemm(xb, values + row0 * w.k, out, cuda::GemmOutput::F32, m, rows, w.k, stream_.get(),
                    cuda::gemm_weight_bf16_alpha(w.stored));
  else
    cuda::weight_gemm(xb, m, row_slice(w.stored, row0, rows), out, cuda::GemmOutput::F32, stream_.get());
  if (out != y)
    cuda::copy_2d(y, static_cast<size_t>(ldy) * 4, out, static_cast<size_t>(rows) * 4, static_cast<size_t>(rows) * 4,
                  static_cast<size_t>(m), stream_);
}

bool GpuLinear::apply_swiglu(const uint16_t* x16, const LinearWeight& w1, const LinearWeight& w3, int64_t m,
                             float limit, uint16_t* y16) {
  if (w1.f32 || w3.f32 || w1.dense || w3.dense || w1.owned.bytes() || w3.owned.bytes() || m >= decode_once_rows_ ||
      !cuda::weight_gemm_swiglu_takes(w1.stored, w3.stored, m))
    return false;
  cuda::weight_gemm_swiglu(x16, m, w1.stored, w3.stored, limit, y16, cuda::GemmOutput::Bf16, stream_.get());
  return true;
}

bool GpuLinear::apply_groups_batched(const float* x, const LinearWeight& w, void* y, cuda::GemmOutput out, int64_t m,
                                     int64_t groups, int64_t R, const uint16_t* x_bf16) {
  const int64_t k = w.k;
  if (groups * R != w.n)
    throw Error("GPU linear " + io::quote_name(w.name) + ": " + std::to_string(groups) + " groups of " + std::to_string(R) +
                " rows for its " + std::to_string(w.n));
  if (w.f32 || w.dense || m >= decode_once_rows_ || !cuda::batched_weight_gemm_takes(w.stored.format, m, R, k)) return false;
  cuda::BatchedGemm b;
  b.x = x_bf16 ? x_bf16 : to_bf16(x, groups * k, m, groups * k);
  b.m = m, b.ldx = groups * k, b.x_batch_stride = k;
  b.w = w.stored, b.batch = groups, b.n = R;
  b.y = y, b.ldy = groups * R, b.y_batch_stride = R;
  b.out = out;
  cuda::batched_weight_gemm(b, stream_.get());
  return true;
}

bool GpuLinear::apply_groups_bf16(const float* x, const LinearWeight& w, uint16_t* y16, int64_t m, int64_t groups,
                                  int64_t R, const uint16_t* x_bf16) {
  return apply_groups_batched(x, w, y16, cuda::GemmOutput::Bf16, m, groups, R, x_bf16);
}

void GpuLinear::apply_groups(const float* x, const LinearWeight& w, float* y, int64_t m, int64_t groups, int64_t R,
                             const uint16_t* x_bf16) {
  const int64_t k = w.k;
  // A few rows of a stored FP4/FP8 weight: every group in one launch, x rounded to BF16 once.
  if (apply_groups_batched(x, w, y, cuda::GemmOutput::F32, m, groups, R, x_bf16)) return;
  // One row: x rounded to BF16 once, and each group's slice of it (and of y) is dense, so apply()
  // reads it in place and writes in place.
  const uint16_t* xb = m == 1 && !w.f32 ? (x_bf16 ? x_bf16 : to_bf16(x, groups * k, 1, groups * k)) : nullptr;
  for (int64_t g = 0; g < groups; ++g)
    apply(x + g * k, groups * k, w, y + g * R, groups * R, m, g * R, R, xb ? xb + g * k : nullptr);
}

}  // namespace fp4kit::gpu_engine
