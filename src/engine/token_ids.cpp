#include "engine/token_ids.h"

#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "io/safetensors_file.h"

namespace fp4kit::engine {

TokenBatch parse_token_ids(std::string_view text, const std::string& label) {
  TokenBatch b;
  int64_t width = -1;
  size_t line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    int64_t count = 0;
    size_t i = 0;
    while (i < line.size()) {
      const char c = line[i];
      if (c == ' ' || c == '\t' || c == ',' || c == '\r') {
        ++i;
        continue;
      }
      int64_t v = 0;
      const auto [ptr, ec] = std::from_chars(line.data() + i, line.data() + line.size(), v);
      const size_t used = static_cast<size_t>(ptr - (line.data() + i));
      if (ec != std::errc{} || used == 0 || v < 0 ||
          (ptr != line.data() + line.size() && !std::strchr(" \t,\r", *ptr))) {
        size_t end = i;
        while (end < line.size() && !std::strchr(" \t,\r", line[end])) ++end;
        throw InputError(label + ": line " + std::to_string(line_no) + ": '" + std::string(line.substr(i, end - i)) +
                         "' is not a token id (a non-negative integer)");
      }
      b.ids.push_back(v);
      ++count;
      i += used;
    }
    if (count == 0) continue;
    if (width >= 0 && count != width)
      throw InputError(label + ": line " + std::to_string(line_no) + " has " + std::to_string(count) +
                       " ids, earlier lines " + std::to_string(width) + " (sequences must have equal length)");
    width = count;
    ++b.batch;
  }
  if (b.ids.empty()) throw InputError(label + ": no token ids");
  return b;
}

TokenBatch load_token_ids(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot read the token id file");
  char magic[9] = {};
  in.read(magic, 9);
  // A safetensors file starts with an 8-byte length and then '{'.
  if (in.gcount() == 9 && magic[8] == '{') {
    in.close();
    const io::SafetensorsFile f = io::SafetensorsFile::open(path);
    const io::TensorInfo* t = f.find("input_ids");
    if (!t) throw InputError(path + ": no tensor 'input_ids'");
    if ((t->dtype != DType::I64 && t->dtype != DType::I32) || t->shape.empty() || t->shape.size() > 2 || t->numel() == 0)
      throw InputError(path + ": tensor 'input_ids' must be a non-empty I64 or I32 [batch, seq] or [seq], got " +
                       std::string(dtype_name(t->dtype)) + " " + io::shape_string(t->shape));
    const std::vector<std::byte> bytes = f.read_all(*t);
    TokenBatch b;
    b.batch = t->shape.size() == 2 ? t->shape[0] : 1;
    b.ids.resize(static_cast<size_t>(t->numel()));
    for (size_t i = 0; i < b.ids.size(); ++i) {
      if (t->dtype == DType::I64) {
        std::memcpy(&b.ids[i], bytes.data() + 8 * i, 8);
      } else {
        int32_t v;
        std::memcpy(&v, bytes.data() + 4 * i, 4);
        b.ids[i] = v;
      }
      if (b.ids[i] < 0) throw InputError(path + ": tensor 'input_ids' holds the negative id " + std::to_string(b.ids[i]));
    }
    return b;
  }
  in.clear();
  in.seekg(0);
  std::ostringstream text;
  text << in.rdbuf();
  return parse_token_ids(text.str(), path);
}

}  // namespace fp4kit::engine

namespace fp4kit::engine {
TokenBatch token_ids_from_options(const std::string& ids_text, const std::string& ids_file) {
  if (ids_text.empty() == ids_file.empty()) throw InputError("give the token ids with exactly one of --ids and --ids-file");
  return ids_file.empty() ? parse_token_ids(ids_text, "--ids") : load_token_ids(ids_file);
}
}  // namespace fp4kit::engine
