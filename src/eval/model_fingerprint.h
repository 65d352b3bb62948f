#pragma once
// Which model a saved set of base logits came from: a fingerprint of the checkpoint's config.json,
// every tensor's name, dtype and shape, and the first 64 KiB of data of every shard (so that two
// checkpoints of one architecture with different weights differ). Reads headers and at most
// 64 KiB per shard: seconds, also for a full-size checkpoint.
#include <string>

namespace fp4kit::eval {

// 16 hex digits; InputError if `dir` holds no checkpoint.
std::string model_fingerprint(const std::string& dir);

}  // namespace fp4kit::eval
