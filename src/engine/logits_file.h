#pragma once
// Writes logits as a safetensors file with one F32 tensor `logits`: [seq, vocab] for one sequence,
// [batch, seq, vocab] for several. Atomic (temporary name, fsync, rename).
#include <cstdint>
#include <string>
#include <vector>

namespace fp4kit::engine {

void write_logits(const std::string& path, const std::vector<float>& logits, int64_t batch, int64_t seq, int64_t vocab);

}  // namespace fp4kit::engine
