#pragma once
// Token ids given to the run/generate/compare commands: a string ("0 15 7", commas allowed), or a
// file: safetensors with an I64 (or I32) `input_ids` [B, S] (or [S]), or text with one sequence per
// non-empty line (all of the same length). Ids are checked against the vocabulary by the engine.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fp4kit::engine {

struct TokenBatch {
  std::vector<int64_t> ids;  // [batch, seq], sequence-major
  int64_t batch = 0;
  int64_t seq() const { return batch ? static_cast<int64_t>(ids.size()) / batch : 0; }
};

// InputError naming `label` for a non-integer, a negative id, unequal line lengths or no ids at all.
TokenBatch parse_token_ids(std::string_view text, const std::string& label);
TokenBatch load_token_ids(const std::string& path);

}  // namespace fp4kit::engine

namespace fp4kit::engine {
// The commands' --ids TEXT / --ids-file PATH: exactly one of them must be given.
TokenBatch token_ids_from_options(const std::string& ids_text, const std::string& ids_file);
}  // namespace fp4kit::engine
