#pragma once
// Calibration data: reads `--data` (text, JSON lines, token-id text, or a safetensors file of
// input_ids), tokenizes text with the model's tokenizer, and packs the result into a batch of
// `samples` rows of `seq_len` token ids. The rules (also in docs/calibrate.md):
//
// Format (DataFormat::Auto): by extension first: .safetensors -> input_ids tensor; .jsonl/.json -> JSON
// lines; .ids -> token-id text. Otherwise a file that starts with a safetensors header is one, a file
// whose first non-blank line starts with '{' is JSON lines, and anything else is plain text.
//   text         one sample per line (a trailing CR is dropped; blank lines are skipped)
//   JSON lines   one {"text": "..."} object per line (blank lines skipped)
//   token ids    one sequence per line, ids separated by whitespace
//   safetensors  an I64 (or I32) tensor "input_ids" [B, S]
// Text samples are encoded one by one with the tokenizer's special tokens (BOS for DeepSeek) and
// concatenated in file order; the stream is cut into rows of seq_len tokens. When the tokenizer adds
// a prefix (BOS), every row starts with it: a row that would begin inside a sample gets the prefix
// put in front. Reading stops once the rows are full; a last partial row is dropped. Fewer rows than
// asked is not an error: the batch says how many it has, with a note.
// Token ids (both formats) are used as they are, no BOS added: the first `samples` sequences (samples 0:
// all of them), each cut to seq_len (seq_len 0: as stored, all sequences equally long); a shorter
// sequence is an error.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fp4kit::calib {

class Tokenizer;

enum class DataFormat { Auto, Text, JsonLines, TokenIds, Safetensors };
// "auto", "text", "jsonl", "ids", "safetensors".
std::optional<DataFormat> parse_data_format(std::string_view name);
const char* data_format_name(DataFormat format);
// The format DataFormat::Auto picks for `path` (reads at most the file's first line).
DataFormat detect_data_format(const std::string& path);

struct CalibDataOptions {
  int64_t samples = 0;      // rows wanted (> 0; 0 only for token-id files: every stored sequence)
  int64_t seq_len = 0;      // tokens per row (> 0; 0 only for token-id files: as stored)
  int64_t max_seq_len = 0;  // the model's limit (max_position_embeddings); 0: no limit
  int64_t vocab_size = 0;   // every id must be below it; 0: the tokenizer's, if any
};

struct CalibBatch {
  int64_t rows = 0;
  int64_t seq_len = 0;
  std::vector<int64_t> ids;  // rows x seq_len, row-major
  DataFormat format = DataFormat::Text;
  std::string source;        // file path, or "built-in corpus"
  int64_t samples_read = 0;  // lines / sequences / documents consumed
  std::vector<std::string> notes;
};

// InputError naming the file (and line, or tensor and element) for every bad input: a missing or
// empty file, non-UTF-8 text, a bad JSON line, a bad or out-of-vocabulary id, a sequence shorter than
// seq_len, seq_len past the model's limit, text without a tokenizer.
CalibBatch load_calib_data(const std::string& path, DataFormat format, const Tokenizer* tokenizer,
                           const CalibDataOptions& options);
// The same packing over the built-in corpus (default_corpus.h).
CalibBatch default_calib_data(const Tokenizer& tokenizer, const CalibDataOptions& options);

// Packs encoded samples as described above; `prefix` is the tokenizer's special prefix. Returns false
// from `next` when there are no more samples.
class SamplePacker {
 public:
  SamplePacker(const CalibDataOptions& options, std::vector<int32_t> prefix);
  bool full() const;
  void add(const std::vector<int32_t>& sample_ids);
  CalibBatch finish(CalibBatch batch);

 private:
  CalibDataOptions options_;
  std::vector<int32_t> prefix_;
  std::vector<int64_t> rows_;  // completed rows
  std::vector<int64_t> row_;   // the row being filled
  int64_t dropped_ = 0;
};

}  // namespace fp4kit::calib
