#pragma once
// Base-model logits saved by `eval --save-base-logits` and read back by `--base-logits`, so that a
// source checkpoint runs once for several conversions. A safetensors file:
//   logits     F32 [batch, seq, vocab]   the base model's logits of every token, unrounded, or
//              F16 [batch, seq, vocab]   each row minus its maximum, rounded to F16 (softmax, KLD, nll and
//                                        argmax do not depend on the shift; F16 keeps 11 significant bits)
//   input_ids  I64 [batch, seq]          the token ids they were computed from
//   __metadata__ {"format": "fp4kit-base-logits", "version": "1", "model_fingerprint": model_fingerprint()}
// 4 * vocab + 8 bytes per token with F32 (so that a lossless conversion still scores KLD 0 exactly), or
// 2 * vocab + 8 with F16.
// Written atomically (temporary name, fsync, rename).
#include <cstdint>
#include <string>
#include <vector>

namespace fp4kit::eval {

struct BaseLogits {
  std::vector<float> logits;  // [batch*seq, vocab]
  std::vector<int64_t> ids;   // [batch*seq]
  int64_t batch = 0, seq = 0, vocab = 0;
  std::string model_fingerprint;
};

enum class BaseLogitsDType { F32, F16 };

void write_base_logits(const std::string& path, const BaseLogits& logits, BaseLogitsDType dtype = BaseLogitsDType::F32);

// Reads `path` (either dtype; F16 rows come back shifted as stored) and checks it against the run: InputError naming the file for another format, a model
// fingerprint other than `expected_fingerprint` (another base model), another vocabulary, other token
// ids (naming the first sequence and position that differs) or a shape that does not match.
BaseLogits read_base_logits(const std::string& path, const std::string& expected_fingerprint,
                            const std::vector<int64_t>& ids, int64_t batch, int64_t vocab);

}  // namespace fp4kit::eval
