#include "calib/calib_data.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "calib/default_corpus.h"
#include "calib/tokenizer.h"
#include "calib/unicode.h"
#include "io/safetensors_file.h"

namespace fp4kit::calib {

namespace {

std::string ends_with_lower(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

void check_options(const CalibDataOptions& o, bool ids_file) {
  if (o.samples < 0 || (o.samples == 0 && !ids_file))
    throw InputError("--samples must be at least 1 (got " + std::to_string(o.samples) + ")");
  if (o.seq_len < 0 || (o.seq_len == 0 && !ids_file))
    throw InputError("--seq-len must be at least 1 (got " + std::to_string(o.seq_len) + ")");
  if (o.max_seq_len > 0 && o.seq_len > o.max_seq_len)
    throw InputError("--seq-len " + std::to_string(o.seq_len) + " is longer than the model allows (max_position_embeddings " +
                     std::to_string(o.max_seq_len) + ")");
}

std::string line_label(const std::string& path, int64_t line) { return path + ":" + std::to_string(line); }

// Lines of a text file, one at a time, with their numbers; InputError for a file that cannot be read.
class LineReader {
 public:
  explicit LineReader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw InputError(path + ": is a directory, not a data file");
    if (!in_) throw InputError(path + ": cannot open");
  }
  bool next(std::string& line) {
    if (!std::getline(in_, line)) {
      if (in_.bad()) throw InputError(path_ + ": cannot read");
      return false;
    }
    ++number_;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  }
  int64_t number() const { return number_; }

 private:
  std::string path_;
  std::ifstream in_;
  int64_t number_ = 0;
};

bool blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; });
}

void check_utf8(const std::string& path, int64_t line, std::string_view text) {
  if (const size_t bad = find_invalid_utf8(text); bad != std::string_view::npos)
    throw InputError(line_label(path, line) + ": not valid UTF-8 (byte " + std::to_string(bad + 1) + " of the line)");
}

int64_t vocab_limit(const CalibDataOptions& o, const Tokenizer* tokenizer) {
  if (o.vocab_size > 0) return o.vocab_size;
  return tokenizer ? tokenizer->vocab_size() : 0;
}

CalibBatch load_text(const std::string& path, DataFormat format, const Tokenizer& tokenizer, const CalibDataOptions& o) {
  SamplePacker packer({o.samples, o.seq_len, o.max_seq_len, vocab_limit(o, &tokenizer)}, tokenizer.special_prefix());
  LineReader reader(path);
  CalibBatch batch;
  batch.format = format;
  batch.source = path;
  std::string line;
  while (!packer.full() && reader.next(line)) {
    check_utf8(path, reader.number(), line);
    if (blank(line)) continue;
    std::string text;
    if (format == DataFormat::JsonLines) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        std::string what = e.what();
        if (auto k = what.find("] "); k != std::string::npos) what = what.substr(k + 2);
        throw InputError(line_label(path, reader.number()) + ": not a JSON line: " + what);
      }
      if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
        throw InputError(line_label(path, reader.number()) + ": expected an object with a \"text\" string");
      text = j["text"].get<std::string>();
      if (text.empty()) continue;
    } else {
      text = std::move(line);
    }
    packer.add(tokenizer.encode(text, true));
    ++batch.samples_read;
  }
  if (batch.samples_read == 0)
    throw InputError(path + ": no samples (the file is empty or has only blank lines)");
  return packer.finish(std::move(batch));
}

// Rows of ids, however stored, into the batch: first `samples`, cut to seq_len.
struct IdRows {
  std::vector<std::vector<int64_t>> rows;
  std::vector<std::string> where;  // "FILE:LINE" / "FILE: tensor 'input_ids' row R", per row
};

CalibBatch pack_id_rows(const IdRows& in, const std::string& path, DataFormat format, const CalibDataOptions& o,
                        int64_t vocab) {
  CalibBatch batch;
  batch.format = format;
  batch.source = path;
  if (in.rows.empty()) throw InputError(path + ": no token id sequences (the file is empty)");
  const size_t take = o.samples == 0 ? in.rows.size() : std::min<size_t>(in.rows.size(), static_cast<size_t>(o.samples));
  int64_t len = o.seq_len;
  if (len == 0) len = static_cast<int64_t>(in.rows[0].size());
  if (len == 0) throw InputError(in.where[0] + ": a sequence with no token ids");
  if (o.max_seq_len > 0 && len > o.max_seq_len)
    throw InputError(in.where[0] + ": " + std::to_string(len) + " ids, longer than the model allows (max_position_embeddings " +
                     std::to_string(o.max_seq_len) + ")");
  for (size_t r = 0; r < take; ++r) {
    const auto& row = in.rows[r];
    const int64_t n = static_cast<int64_t>(row.size());
    if (n < len || (o.seq_len == 0 && n != len))
      throw InputError(in.where[r] + ": " + std::to_string(n) + " ids, " +
                       (o.seq_len == 0 ? "but the first sequence has " + std::to_string(len) + " (sequences must be equally long)"
                                       : "fewer than --seq-len " + std::to_string(len)));
    for (int64_t k = 0; k < len; ++k) {
      const int64_t id = row[static_cast<size_t>(k)];
      if (id < 0 || (vocab > 0 && id >= vocab))
        throw InputError(in.where[r] + ": id " + std::to_string(id) + " at position " + std::to_string(k) +
                         " is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")");
      batch.ids.push_back(id);
    }
  }
  batch.rows = static_cast<int64_t>(take);
  batch.seq_len = len;
  batch.samples_read = batch.rows;
  if (o.samples > 0 && batch.rows < o.samples)
    batch.notes.push_back("the data holds " + std::to_string(batch.rows) + " sequences, fewer than the " +
                          std::to_string(o.samples) + " samples asked for");
  if (o.seq_len > 0 && static_cast<int64_t>(in.rows[0].size()) > o.seq_len)
    batch.notes.push_back("sequences cut to --seq-len " + std::to_string(o.seq_len));
  return batch;
}

CalibBatch load_id_text(const std::string& path, const CalibDataOptions& o, int64_t vocab) {
  LineReader reader(path);
  IdRows rows;
  std::string line;
  while ((o.samples == 0 || static_cast<int64_t>(rows.rows.size()) < o.samples) && reader.next(line)) {
    if (blank(line)) continue;
    std::vector<int64_t> ids;
    const char* p = line.data();
    const char* end = line.data() + line.size();
    while (p < end) {
      while (p < end && std::strchr(" \t\v\f,", *p) && *p) ++p;
      if (p == end) break;
      int64_t v = 0;
      auto [stop, ec] = std::from_chars(p, end, v);
      if (ec != std::errc() || (stop < end && !std::strchr(" \t\v\f,", *stop))) {
        const char* word_end = p;
        while (word_end < end && !std::strchr(" \t\v\f,", *word_end)) ++word_end;
        throw InputError(line_label(path, reader.number()) + ": " + "'" + std::string(p, word_end) + "' is not a token id");
      }
      ids.push_back(v);
      p = stop;
    }
    rows.rows.push_back(std::move(ids));
    rows.where.push_back(line_label(path, reader.number()));
  }
  return pack_id_rows(rows, path, DataFormat::TokenIds, o, vocab);
}

CalibBatch load_safetensors_ids(const std::string& path, const CalibDataOptions& o, int64_t vocab) {
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  const io::TensorInfo& t = file.at("input_ids");
  const std::string label = path + ": tensor 'input_ids'";
  if ((t.dtype != DType::I64 && t.dtype != DType::I32) || t.shape.size() != 2)
    throw InputError(label + ": expected I64 [B, S] token ids, got " + std::string(dtype_name(t.dtype)) + " " +
                     io::shape_string(t.shape));
  const std::vector<std::byte> raw = file.read_all(t);
  const int64_t b = t.shape[0];
  const int64_t s = t.shape[1];
  IdRows rows;
  for (int64_t r = 0; r < (o.samples == 0 ? b : std::min(b, o.samples)); ++r) {
    std::vector<int64_t> row(static_cast<size_t>(s));
    for (int64_t k = 0; k < s; ++k) {
      const size_t at = static_cast<size_t>(r * s + k);
      if (t.dtype == DType::I64) {
        std::memcpy(&row[static_cast<size_t>(k)], raw.data() + at * 8, 8);
      } else {
        int32_t v;
        std::memcpy(&v, raw.data() + at * 4, 4);
        row[static_cast<size_t>(k)] = v;
      }
    }
    rows.rows.push_back(std::move(row));
    rows.where.push_back(label + " row " + std::to_string(r));
  }
  return pack_id_rows(rows, path, DataFormat::Safetensors, o, vocab);
}

bool looks_like_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char head[9];
  if (!in.read(reinterpret_cast<char*>(head), 9)) return false;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | head[i];
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  return !ec && head[8] == '{' && n >= 2 && n <= size - 8;
}

}  // namespace

std::optional<DataFormat> parse_data_format(std::string_view name) {
  if (name == "auto") return DataFormat::Auto;
  if (name == "text") return DataFormat::Text;
  if (name == "jsonl") return DataFormat::JsonLines;
  if (name == "ids") return DataFormat::TokenIds;
  if (name == "safetensors") return DataFormat::Safetensors;
  return std::nullopt;
}

const char* data_format_name(DataFormat format) {
  switch (format) {
    case DataFormat::Auto: return "auto";
    case DataFormat::Text: return "text";
    case DataFormat::JsonLines: return "jsonl";
    case DataFormat::TokenIds: return "ids";
    case DataFormat::Safetensors: return "safetensors";
  }
  return "?";
}

DataFormat detect_data_format(const std::string& path) {
  const std::string ext = ends_with_lower(path);
  if (ext == ".safetensors") return DataFormat::Safetensors;
  if (ext == ".jsonl" || ext == ".json") return DataFormat::JsonLines;
  if (ext == ".ids") return DataFormat::TokenIds;
  if (looks_like_safetensors(path)) return DataFormat::Safetensors;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    const size_t first = line.find_first_not_of(" \t\r\f\v");
    if (first == std::string::npos) continue;
    return line[first] == '{' ? DataFormat::JsonLines : DataFormat::Text;
  }
  return DataFormat::Text;
}

SamplePacker::SamplePacker(const CalibDataOptions& options, std::vector<int32_t> prefix)
    : options_(options), prefix_(std::move(prefix)) {
  check_options(options_, false);
  if (static_cast<int64_t>(prefix_.size()) >= options_.seq_len)
    throw InputError("--seq-len " + std::to_string(options_.seq_len) + " leaves no room after the tokenizer's " +
                     std::to_string(prefix_.size()) + " special token(s)");
}

bool SamplePacker::full() const { return static_cast<int64_t>(rows_.size()) >= options_.samples * options_.seq_len; }

void SamplePacker::add(const std::vector<int32_t>& sample) {
  const size_t len = static_cast<size_t>(options_.seq_len);
  size_t k = 0;
  while (k < sample.size() && !full()) {
    if (row_.empty() && !prefix_.empty() &&
        !(sample.size() - k >= prefix_.size() && std::equal(prefix_.begin(), prefix_.end(), sample.begin() + static_cast<ptrdiff_t>(k))))
      row_.assign(prefix_.begin(), prefix_.end());
    const size_t take = std::min(len - row_.size(), sample.size() - k);
    row_.insert(row_.end(), sample.begin() + static_cast<ptrdiff_t>(k), sample.begin() + static_cast<ptrdiff_t>(k + take));
    k += take;
    if (row_.size() == len) {
      rows_.insert(rows_.end(), row_.begin(), row_.end());
      row_.clear();
    }
  }
  dropped_ += static_cast<int64_t>(sample.size() - k);
}

CalibBatch SamplePacker::finish(CalibBatch batch) {
  for (int64_t id : rows_)
    if (options_.vocab_size > 0 && id >= options_.vocab_size)
      throw InputError(batch.source + ": the tokenizer gave id " + std::to_string(id) + ", outside the model's vocabulary (vocab_size " +
                       std::to_string(options_.vocab_size) + ")");
  batch.seq_len = options_.seq_len;
  batch.rows = static_cast<int64_t>(rows_.size()) / options_.seq_len;
  batch.ids = std::move(rows_);
  if (batch.rows == 0)
    throw InputError(batch.source + ": the data gives fewer than --seq-len " + std::to_string(options_.seq_len) +
                     " tokens, not one full sample");
  if (batch.rows < options_.samples)
    batch.notes.push_back("the data gives " + std::to_string(batch.rows) + " rows of " + std::to_string(options_.seq_len) +
                          " tokens, fewer than the " + std::to_string(options_.samples) + " samples asked for");
  if (!row_.empty()) batch.notes.push_back("a last partial row of " + std::to_string(row_.size()) + " tokens was dropped");
  return batch;
}

CalibBatch load_calib_data(const std::string& path, DataFormat format, const Tokenizer* tokenizer,
                           const CalibDataOptions& options) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw InputError(path + ": no such data file");
  if (format == DataFormat::Auto) format = detect_data_format(path);
  const bool ids_file = format == DataFormat::TokenIds || format == DataFormat::Safetensors;
  check_options(options, ids_file);
  if (ids_file) {
    const int64_t vocab = vocab_limit(options, tokenizer);
    return format == DataFormat::TokenIds ? load_id_text(path, options, vocab) : load_safetensors_ids(path, options, vocab);
  }
  if (!tokenizer)
    throw InputError(path + ": " + data_format_name(format) + " data needs the model's tokenizer.json");
  return load_text(path, format, *tokenizer, options);
}

CalibBatch default_calib_data(const Tokenizer& tokenizer, const CalibDataOptions& options) {
  SamplePacker packer({options.samples, options.seq_len, options.max_seq_len, vocab_limit(options, &tokenizer)},
                      tokenizer.special_prefix());
  CalibBatch batch;
  batch.format = DataFormat::Text;
  batch.source = "built-in corpus";
  for (std::string_view document : default_corpus()) {
    if (packer.full()) break;
    packer.add(tokenizer.encode(document, true));
    ++batch.samples_read;
  }
  return packer.finish(std::move(batch));
}

}  // namespace fp4kit::calib
