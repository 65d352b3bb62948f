#pragma once
// The full XᵀX of every calibrated linear's input (`calibrate --hessian DIR --hessian-mode full`),
// the statistics `convert --gptq` compensates rounding errors with. Too large for one file held in
// memory (a V4 Pro expert's w1 input alone is 7168² values), so it is a directory, written one
// decoder layer at a time:
//   DIR/layer-NNN.safetensors   one per layer:
//     <module>.xtx   F32 [K, K]     Σ_rows x·xᵀ, summed in F64 and rounded once, symmetric
//                    F32 [G, K, K]  grouped linears (V4's wo_a): group g's slice of the input
//     <module>.rows  I64 0-d        rows summed
//     metadata: "format", "fingerprint", "model", "layer"
//   DIR/xtx-full.json           written last (its presence means the directory is complete):
//     {"format", "fingerprint", "model", "samples", "seq_len", "w2_input", "all_experts", "data",
//      "modules": {module: "layer-NNN.safetensors"}}
// "fingerprint" is the calibration run's (the amax file of the run has the same), "model" the
// checkpoint's (calibration_model_fingerprint). docs/calibrate.md states the sizes.
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors_file.h"

namespace fp4kit {

inline constexpr std::string_view kXtxFullFormat = "fp4kit-xtx-full-1";
inline constexpr std::string_view kXtxFullIndex = "xtx-full.json";
inline constexpr std::string_view kXtxFullSuffix = ".xtx";

std::string xtx_full_layer_file(int64_t layer);  // "layer-NNN.safetensors"

// One layer's file, built while the layer runs: each module's matrix goes to a spill file beside
// the output as soon as it is complete (only one matrix is in memory at a time), and finish()
// copies them into the safetensors file (which needs every tensor declared before its data).
class XtxFullLayerWriter {
 public:
  explicit XtxFullLayerWriter(std::string path);
  ~XtxFullLayerWriter();
  // `groups` matrices of k×k F32 values, row-major. Error if the module was added already.
  void add(const std::string& module, int64_t groups, int64_t k, int64_t rows, const float* values);
  size_t size() const { return modules_.size(); }
  // Writes and publishes the layer file, removes the spill.
  void finish(const std::map<std::string, std::string>& metadata);

 private:
  struct Entry {
    int64_t groups = 1, k = 0, rows = 0;
    uint64_t offset = 0;
  };
  std::string path_, spill_path_;
  std::ofstream spill_;
  uint64_t spill_bytes_ = 0;
  std::map<std::string, Entry> modules_;
};

// The module names of a layer file (for the index).
std::vector<std::string> xtx_full_modules(const io::SafetensorsFile& layer_file);

// The statistics directory as `convert` reads it.
class XtxFullStatistics {
 public:
  // InputError naming the path when it is not such a directory (no xtx-full.json, another format),
  // or a layer file is missing or of another run. Opens every layer file (headers only).
  static XtxFullStatistics open(const std::string& dir);
  const std::string& dir() const { return dir_; }
  const std::string& fingerprint() const { return fingerprint_; }
  const std::string& model() const { return model_; }
  bool has(const std::string& module) const { return files_.count(module) != 0; }
  // The matrices of the module whose weight `weight` is [rows, cols], as F64 [groups][cols][cols]
  // (groups 1, or G dividing rows for a grouped linear). InputError naming the file, the tensor and
  // the weight when the tensor is missing, of another dtype or shape, or its file is of another run.
  std::vector<double> read(const std::string& module, const std::string& weight, int64_t rows, int64_t cols,
                           int64_t& groups) const;
  // The rows the module's XᵀX summed (`<module>.rows`); nullopt where the tensor is missing or not an
  // I64 scalar (read() is the check that refuses a file).
  std::optional<int64_t> rows(const std::string& module) const;

 private:
  std::string dir_, fingerprint_, model_;
  std::map<std::string, std::string> files_;  // module -> layer file
  std::map<std::string, std::unique_ptr<io::SafetensorsFile>> open_;  // layer file name -> file
};

}  // namespace fp4kit
