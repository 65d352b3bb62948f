#pragma once
// `eval`: the same token sequences through a base (source) checkpoint and a quantized one with the f32
// CPU engine, layer by layer with both models' hidden states side by side, so each layer's weights are
// read once per model:
//
//   for each layer L:   quantized layer L on a copy of the base stream entering L  -> branch L
//                       base layer L on the base stream and on every branch started before L
//                       quantized layer L on the quantized stream
//   heads: base, quantized, and base head on every branch
//
// Branch L is the model with only layer L quantized (embedding, head and every other layer from the
// base): its logits against the base's give the KL that layer alone causes, and the relative error
// ||branch_L - base||/||base|| of the residual (hc) streams right after layer L the error it adds.
// Likewise a branch per layer and kind of weight (kWeightKinds: attention, shared expert, routed
// experts), run by an engine that reads only that kind from the quantized checkpoint (WeightOverlay).
// The branches cost 4 extra layer runs per layer (whole layer and 3 kinds), 4*layers*(layers-1)/2 extra
// base layer runs, 4 base heads per layer and 4 streams per layer of memory.
// With base logits read from a file, neither the base model nor the attribution is run. Through layer
// runners (EvalOptions::runner, the GPU) the attribution is each layer's residual error only.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/layer_runner.h"
#include "eval/base_logits_file.h"
#include "eval/kl_statistics.h"
#include "eval/position_score.h"

namespace fp4kit::eval {

struct EvalOptions {
  std::string quantized, base;  // checkpoint directories
  unsigned threads = 0;
  bool attribution = true;       // per-layer attribution (needs the base model run)
  std::string save_base_logits;  // write the base logits here ("" = no)
  BaseLogitsDType save_dtype = BaseLogitsDType::F32;
  std::string base_logits;       // read the base logits from here instead of running the base ("" = no)
  // What runs the two models: null for the CPU engine (the whole attribution above), or a runner
  // factory (the GPU engine's for --device cuda): both models side by side, each layer read once per
  // model, and each layer's residual error as its attribution (no per-branch logits, no kinds).
  engine::LayerRunnerFactory runner;
};

// One "base model with some weights quantized" against the base.
struct BranchScore {
  double residual_rel_error = 0;     // ||h(quantized weights) - h(base)|| / ||h(base)||, right after the layer
  bool logits_scored = true;         // false: only the residual error was measured (runner attribution)
  double kld_mean = 0, kld_max = 0;  // its logits against the base's, over the scored positions
  double top1 = 0;                   // fraction of scored positions whose argmax agrees with the base's
};

// The kinds of weight attributed separately: the checkpoint tensors whose names contain `marker`.
struct WeightKind {
  const char* name;
  const char* marker;
};
inline constexpr WeightKind kWeightKinds[] = {
    {"attention", ".attn."}, {"shared_expert", ".ffn.shared_experts."}, {"routed_experts", ".ffn.experts."}};

struct KindAttribution : BranchScore {
  std::string kind;  // kWeightKinds[].name
};

struct LayerAttribution : BranchScore {  // the whole layer quantized
  int64_t layer = 0;
  std::vector<KindAttribution> kinds;  // one kind of the layer's weights quantized, in kWeightKinds order
};

struct EvalResult {
  int64_t batch = 0, seq = 0, vocab = 0, layers = 0;
  std::string base_fingerprint;
  bool base_logits_from_file = false;
  std::vector<PositionScore> positions;
  KlStatistics stats;
  std::vector<LayerAttribution> attribution;  // empty when not run
  double seconds = 0;                         // the whole evaluation: both models, attribution, statistics
  int64_t tokens() const { return batch * seq; }
};

// Called after each layer: (layers done, layers in all).
using EvalProgress = std::function<void(int64_t, int64_t)>;

// InputError unless both config.json files name the same model_type (checked before anything is read
// with the base's configuration, e.g. its data).
void require_same_model_type(const std::string& quantized, const std::string& base);

// ids: [batch, seq] sequence-major. InputError for checkpoints that differ in architecture, vocabulary,
// layer count or hidden size, for a base-logits file of another model or other ids, and for a
// non-finite logit (naming model, sequence and position) or hidden state (naming the layer).
EvalResult evaluate(const EvalOptions& options, const std::vector<int64_t>& ids, int64_t batch,
                    const EvalProgress& progress = {});

}  // namespace fp4kit::eval
