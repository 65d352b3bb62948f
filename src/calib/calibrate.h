#pragma once
// Max calibration of a DeepSeek V4 checkpoint with fp4kit's own forward pass, one decoder layer at
// a time: the hidden streams of every calibration sequence stay in memory between layers, one
// layer's weights are resident, and after each layer its amax values and the next layer's input are
// published atomically in a state directory next to the output, so that a killed run resumes at the
// last finished layer (`resume`) with a result identical to an uninterrupted one.
//
// Output: `<module>.input_amax` F32 scalars (the format `convert --calib` reads) for attention
// wq_a, wq_b, wkv, wo_a, wo_b, the indexer's wq_b, shared experts, and every routed expert that saw
// a token (with `all_experts`, every routed expert sees every token of its layer for the
// statistics only). Experts that saw no token are left out and counted per layer; convert falls
// back for them as ModelOpt's exporter does. See docs/calibrate.md.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "calib/amax_observer.h"
#include "engine/layer_runner.h"

namespace fp4kit {

struct CalibrationBatch {
  std::vector<int64_t> ids;  // [batch, seq], sequence-major
  int64_t batch = 0, seq = 0;
  std::string source;        // where the ids came from, for the output's metadata
};

struct CalibrateOptions {
  bool all_experts = false;
  W2Input w2_input = W2Input::Unweighted;
  bool resume = false;  // continue from the state directory of an interrupted run
  bool force = false;   // replace an existing output and any stale state
  unsigned threads = 0; // 0: all cores
  // What runs the forward pass: null for the CPU engine; the GPU engine's factory for --device cuda.
  // `device` names it in the state's fingerprint: the two agree to F32 rounding, not bit for bit,
  // so a run resumes only on the device it started on.
  engine::LayerRunnerFactory runner;
  std::string device = "cpu";
  // Also write the XᵀX diagonal blocks of every calibrated module's input here (calib/xtx_table.h);
  // "" for none. On either device (a GPU runner sums them on the device: calib/xtx_observer.h). A
  // resumed run must be asked for them as the interrupted one was.
  std::string hessian_path;
  // Instead of the diagonal blocks, the full XᵀX of every module (calib/xtx_full_file.h): then
  // hessian_path is a directory, written one layer at a time.
  bool hessian_full = false;
};

struct CalibrateLayerReport {
  int64_t layer = 0;
  double seconds = 0;            // 0 for a layer finished by an earlier run
  bool resumed = false;          // finished by an earlier run
  std::vector<int64_t> experts_without_tokens;
  size_t entries = 0;            // amax values recorded
  engine::LayerTiming timing;    // the runner's split of the forward pass (zeros on the CPU)
  double state_seconds = 0;      // writing the layer's values and (if saved) the streams that follow it
  bool state_saved = false;      // the streams after this layer were saved (a resume starts after it)
};

struct CalibrateReport {
  std::string output;
  int64_t tokens = 0, layers = 0;
  std::vector<CalibrateLayerReport> per_layer;
  size_t entries = 0;
  size_t xtx_entries = 0;        // modules in the XᵀX file (with hessian_path)
  double seconds = 0;            // this run
};

// Called after each layer computed here: layers done (of total) and that layer's report.
using CalibrateProgressFn = std::function<void(int64_t done, int64_t total, const CalibrateLayerReport& layer)>;

// Whether to save the hidden streams after a layer (the resume point): never after the last layer;
// always while a save costs under a second; else once the work since the last save is ten times
// the last save's cost (saving stays under a tenth of the run; a kill loses at most that work).
bool save_streams_after_layer(bool last_layer, double last_save_seconds, double work_since_save_seconds);

// InputError for bad input (ids outside the vocabulary, a model missing tensors, an existing output
// or state without force/resume, a state of another model, batch or option set); Error for I/O.
CalibrateReport calibrate(const std::string& model_dir, const CalibrationBatch& batch, const std::string& out_path,
                          const CalibrateOptions& options, const CalibrateProgressFn& progress = {});

// The state directory of an output file: "<out>.fp4kit-calib".
std::string calibration_state_dir(const std::string& out_path);

// Test hook: the process ends with _exit(137) right after this many layers were published.
inline constexpr const char* kCalibrateCrashAfterLayersEnv = "FP4KIT_TEST_CRASH_AFTER_LAYERS";

}  // namespace fp4kit
