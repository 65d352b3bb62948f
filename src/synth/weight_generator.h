#pragma once
// The values of every tensor of a synthetic DeepSeek V4 checkpoint, with the statistics of a trained
// model per tensor role, encoded exactly as the official release stores them (FP8 E4M3 with E8M0
// 128x128 block scales, MXFP4 experts packed in I8 with E8M0 1x32 scales, BF16, F32, I64).
//
// Every value is a function of (seed, tensor name, element index) alone (random.h), so any rows
// of any tensor come out the same whatever the chunking and the thread count.
//
// Statistics:
//  - linear weights [out, in] (FP8, MXFP4, BF16 projections, router): Student-t(4) / sqrt(in), times
//    2^U(-1,1) per output row, times 10..50 on ~0.1% of the input channels (outlier features);
//  - norms 1 + 0.1 N; hc_*_fn N(0, 0.7/sqrt(4H)), hc_*_base N(0, 0.5), hc_*_scale U(0.3, 1.5);
//    attn_sink N(0, 1); compressor ape N(0, 0.5); gate.bias N(0, 0.1); embed and head N(0, 0.02);
//  - tid2eid: k distinct experts in [0, n_routed_experts) per token.
//  - experts stored as FP8 (the FP4 -> FP8 repack layout) are the official repack of the MXFP4
//    experts the same seed gives.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "models/deepseek_v4.h"
#include "synth/random.h"

namespace fp4kit::synth {

// A quantized weight and its `.scale` sibling, as the checkpoint stores them.
struct QuantizedWeight {
  std::vector<std::byte> weight, scale;
};

class WeightGenerator {
 public:
  // `config` gives what shapes alone do not (the expert count of tid2eid).
  WeightGenerator(const DeepseekV4Config& config, uint64_t seed, unsigned threads);

  // Bytes of rows [row_begin, row_end) of a plain (unquantized) tensor: dimension 0 counts rows
  // (a 0-d tensor has one). `out` holds exactly those rows.
  void plain_rows(const TensorSpec& spec, int64_t row_begin, int64_t row_end, std::span<std::byte> out) const;

  // A quantized weight (`weight.storage` is not Plain) and its scale sibling, whole: the scale
  // precedes the weight in a shard, and is known only once every block is.
  QuantizedWeight quantized(const TensorSpec& weight, const TensorSpec& scale) const;

  // The stream of a tensor: what makes two tensors' values independent.
  CounterRng tensor_rng(const std::string& name) const { return root_.child(name); }

 private:
  CounterRng root_;
  int64_t n_routed_experts_;
  unsigned threads_;
};

}  // namespace fp4kit::synth
