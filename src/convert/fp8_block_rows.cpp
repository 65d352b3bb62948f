#include "convert/fp8_block_rows.h"

#include <algorithm>

#include "base/parallel.h"

namespace fp4kit {

namespace {
constexpr size_t kBf16PieceBytes = 1u << 20;  // of BF16 output per thread piece
}  // namespace

void dequantize_fp8_block_rows(const SourceTensor& weight, std::span<const std::byte> scales, Fp8ScaleKind kind,
                               size_t r0, size_t n, std::vector<uint8_t>& input, uint16_t* out, unsigned threads) {
  const io::TensorInfo& src = *weight.info;
  const size_t cols = static_cast<size_t>(src.shape[1]);
  const size_t scale_row_bytes = fp8_scale_dim(cols) * (kind == Fp8ScaleKind::F32 ? 4 : 1);
  const Fp8BlockShape shape{n, cols, kind};
  const std::byte* step_scales = scales.data() + (r0 / kFp8BlockSize) * scale_row_bytes;
  const Fp8BlockKernels& kernels = fp8_block_kernels();
  input.resize(n * cols);
  const size_t piece = std::max<size_t>(1, kBf16PieceBytes / (2 * cols));
  parallel_for(n, piece, threads, [&](size_t a, size_t b) {
    weight.file->read_range(src, (r0 + a) * cols, std::as_writable_bytes(std::span(input)).subspan(a * cols, (b - a) * cols));
    kernels.dequantize_bf16(input.data(), step_scales, shape, a, b, out + a * cols);
  });
}

}  // namespace fp4kit
