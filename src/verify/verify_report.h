#pragma once
// What `verify` found: every failed or suspicious check as one finding, every quantized tensor's
// error numbers, and the totals the reports print. Plain data; the checks fill it in, the text,
// JSON and HTML reports read it.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fp4kit::verify {

// Fail: the checkpoint is wrong (exit 1). Warn: worth a look, the checkpoint still passes.
enum class Severity : uint8_t { Fail, Warn };
std::string_view severity_name(Severity);

struct Finding {
  std::string check;    // stable id, e.g. "fusion.global_scale"; docs/verify.md lists them all
  Severity severity = Severity::Fail;
  std::string tensor;   // the tensor (or module, or file) it is about; "" for the checkpoint as a whole
  std::string message;  // one line that names file and tensor
};

// Error of one quantized tensor of the output against the same tensor in the source.
struct TensorNumerics {
  std::string name;            // the output weight tensor ("layers.0.ffn.experts.3.w1.weight")
  std::string kind;            // what it is across layers: "ffn.experts.w1", "attn.wq_a", ...
  int64_t layer = -1;          // decoder layer, -1 for none (MTP blocks: num_hidden_layers + i)
  std::string source_storage;  // "mxfp4", "bf16", ... ("" without a source tensor)
  std::string scale_method;    // what chose its block scales (verify/scale_methods.h), "" if unrecorded
  uint64_t values = 0;
  uint64_t nan_values = 0, inf_values = 0;                // in the output's dequant
  uint64_t source_nan_values = 0, source_inf_values = 0;  // in the source's
  bool compared = false;       // a source tensor was there to compare with
  // Against the source (only when compared). SQNR is infinite when the output is exact: nullopt.
  std::optional<double> sqnr_db;
  double rel_rms = 0.0, max_abs_error = 0.0;
  uint64_t exact_values = 0;
  double exact_fraction() const { return values ? static_cast<double>(exact_values) / static_cast<double>(values) : 0.0; }
  // What a fresh NVFP4 quantization of the source (ModelOpt numerics, the tensor's own amax) gives:
  // the expectation the output is measured against.
  std::optional<double> expected_sqnr_db;
  bool expected_exact = false;   // a lossless MXFP4 -> NVFP4 cast: every in-window value must match
  uint64_t lossy_window_values = 0;  // values of MXFP4 groups outside the cast's E4M3 window
  std::string flag;              // "" or the check id that failed for it
};

// Whether the checkpoint was walked through an engine's loader contract, and if not, why.
struct EngineVerdict {
  std::string engine;         // "vllm", "sglang", "trtllm"
  bool checked = false;       // false: skipped, `reason` says why (the layout is not one it loads)
  std::string reason;
  size_t tensors_consumed = 0, parameters_filled = 0;
  size_t tensors_skipped = 0;  // tensors its model loader skips by design (e.g. mtp.* for the draft model)
  std::string skipped_why;
};

struct VerifyReport {
  std::string checkpoint, source;  // directories ("" without --source)
  std::string layout;              // "modelopt-v4-mixed", "modelopt", "compressed-tensors", "unknown"
  std::string producer;            // from the config files, "" if none says
  size_t shards = 0, tensors = 0, nvfp4_weights = 0;
  uint64_t checkpoint_bytes = 0, source_bytes_compared = 0;
  size_t kept = 0, kept_identical = 0, quantized_accounted = 0, dropped_accounted = 0;  // with --source
  size_t dequantized = 0, dequantized_exact = 0;  // FP8 blocks written as BF16, equal to the official dequant
  std::vector<Finding> findings;
  std::vector<TensorNumerics> numerics;       // in output name order
  std::vector<EngineVerdict> engines;         // one per engine asked for, in the order asked
  std::array<uint64_t, 256> block_scale_histogram{};  // E4M3 block scale bytes of every NVFP4 weight
  std::optional<double> fail_below_sqnr_db;
  double seconds = 0.0;
  unsigned threads = 1;

  size_t count(Severity) const;
  bool passed() const { return count(Severity::Fail) == 0; }
  void add(std::string check, Severity severity, std::string tensor, std::string message);
};

}  // namespace fp4kit::verify
