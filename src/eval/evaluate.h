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
// The branches cost one extra quantized run per layer, layers*(layers-1)/2 extra base layer runs, one
// base head per layer and one stream per layer of memory.
// With base logits read from a file, neither the base model nor the attribution is run.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "eval/kl_statistics.h"
#include "eval/position_score.h"

namespace fp4kit::eval {

struct EvalOptions {
  std::string quantized, base;   // checkpoint directories
  unsigned threads = 0;
  bool attribution = true;       // per-layer attribution (needs the base model run)
  std::string save_base_logits;  // write the base logits here ("" = no)
  std::string base_logits;       // read the base logits from here instead of running the base ("" = no)
};

struct LayerAttribution {
  int64_t layer = 0;
  double residual_rel_error = 0;  // ||h_L(quantized layer L) - h_L(base)|| / ||h_L(base)||, after layer L
  double kld_mean = 0, kld_max = 0;  // only layer L quantized, against the base
  double top1 = 0;                   // fraction of scored positions whose argmax agrees with the base's
};

struct EvalResult {
  int64_t batch = 0, seq = 0, vocab = 0, layers = 0;
  std::string base_fingerprint;
  bool base_logits_from_file = false;
  std::vector<PositionScore> positions;
  KlStatistics stats;
  std::vector<LayerAttribution> attribution;  // empty when not run
  double seconds = 0;  // the whole evaluation: both models, attribution, statistics
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
