#pragma once
// The one pass over tensor data: for every NVFP4 weight, its block scales (histogram; NaN,
// negative, and zero scales over nonzero values) and its dequant against the source weight's
// (SQNR, relative RMS, max abs error, exactly reproduced values, NaN/Inf, lossless cast) and
// against a fresh NVFP4 quantization of the source (the expectation); for every kept tensor, a
// byte comparison with the source. Tensors are spread over threads, each read in bounded row chunks;
// results depend neither on the thread count nor on the chunk size.
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "io/checkpoint_index.h"
#include "verify/nvfp4_modules.h"
#include "verify/source_accounting.h"
#include "verify/verify_report.h"

namespace fp4kit::verify {

struct DataPassOptions {
  unsigned threads = 1;
  // Values per read (whole rows, at least one). Every stage of a chunk (decodes, error sums, the
  // fresh quantization) runs while its few f32 arrays stay in L2: 64 Ki values, ~1 MB per thread.
  size_t chunk_values = size_t{1} << 16;
  double sqnr_margin_db = 1.0;            // how far below a fresh NVFP4 quantization is still fine
  // Weights whose codes GPTQ chose (their scale method ends in "+gptq"; modules as in
  // verify/scale_methods.h) and their margin: GPTQ deliberately gives the weights a larger error
  // where the activations do not see it, so their SQNR against the source is lower by design.
  std::set<std::string> gptq_modules;
  double gptq_sqnr_margin_db = 12.0;
  // Weights whose block scales were chosen for the activation-weighted error (scale method
  // "hessian"), and their margin: a scale that serves the channels the activations use loses some
  // plain SQNR (1.6 dB on full-size synthetic V4-Flash layers); their codes are still the plain
  // rounding at that scale, so the margin stays much tighter than GPTQ's.
  std::set<std::string> hessian_modules;
  double hessian_sqnr_margin_db = 6.0;
  std::optional<double> fail_below_sqnr_db;
  bool expected = true;                   // compute the fresh-quantization expectation
};

// `source` and `accounting` may be null (no --source). Fills report.numerics, the histogram,
// source_bytes_compared, kept_identical and findings.
void run_data_pass(const io::Checkpoint& output, const Nvfp4Inventory& inventory, const io::Checkpoint* source,
                   const SourceAccounting* accounting, const DataPassOptions& options, VerifyReport& report);

// "ffn.experts.w1" and 3 for "layers.3.ffn.experts.7.w1.weight"; "mtp.ffn.experts.w1" and -1 for
// an MTP block; numbers dropped so that one kind gathers all layers and experts.
std::pair<std::string, int64_t> tensor_kind(const std::string& name);

}  // namespace fp4kit::verify
