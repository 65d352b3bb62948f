#include "calib/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "base/error.h"
#include "calib/tokenizer_added_tokens.h"
#include "calib/tokenizer_bpe.h"
#include "calib/tokenizer_pretokenizer.h"
#include "calib/unicode.h"
#include "io/strict_json.h"

namespace fp4kit::calib {

using json = nlohmann::json;

struct Tokenizer::Impl {
  std::string label;
  std::vector<AddedToken> added;
  AddedTokenMatcher matcher;
  PreTokenizer pre_tokenizer;
  std::unique_ptr<BpeModel> bpe;
  std::vector<std::string> id_to_token;  // vocabulary spelling; added tokens' content
  std::vector<char> is_added;
  bool byte_level_decoder = false;
  std::vector<int32_t> prefix, suffix;
  std::string special_source = "none";
};

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError(path + ": cannot read");
  return std::move(text).str();
}

// Field access with messages that name the file and the field.
class Fields {
 public:
  explicit Fields(const std::string& label) : label_(label) {}
  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw InputError(label_ + ": " + where + ": " + what);
  }
  std::string type_of(const json& j, const std::string& where) const {
    if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) fail(where, "expected an object with a \"type\"");
    return j["type"].get<std::string>();
  }
  bool flag(const json& j, const char* key, bool fallback, const std::string& where) const {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_boolean()) fail(where + "." + key, "expected true or false");
    return j[key].get<bool>();
  }
  std::string text(const json& j, const char* key, const std::string& where) const {
    if (!j.contains(key) || !j[key].is_string()) fail(where + "." + key, "expected a string");
    return j[key].get<std::string>();
  }
  int32_t id(const json& j, const std::string& where) const {
    if (!j.is_number_integer() || j.get<int64_t>() < 0 || j.get<int64_t>() > INT32_MAX)
      fail(where, "expected a token id (an integer 0..2^31-1)");
    return static_cast<int32_t>(j.get<int64_t>());
  }

 private:
  const std::string& label_;
};

void check_normalizer(const Fields& f, const json& n, const std::string& where) {
  if (n.is_null()) return;
  const std::string type = f.type_of(n, where);
  if (type != "Sequence") f.fail(where, "normalizer \"" + type + "\" is not supported (only none or an empty Sequence)");
  if (!n.contains("normalizers") || !n["normalizers"].is_array()) f.fail(where + ".normalizers", "expected an array");
  for (size_t i = 0; i < n["normalizers"].size(); ++i)
    check_normalizer(f, n["normalizers"][i], where + ".normalizers[" + std::to_string(i) + "]");
}

PreTokenizerStep byte_level_step(const Fields& f, const json& j, const std::string& where) {
  PreTokenizerStep step;
  step.kind = PreTokenizerStep::Kind::ByteLevel;
  // The library's defaults for absent fields.
  step.add_prefix_space = f.flag(j, "add_prefix_space", true, where);
  step.use_regex = f.flag(j, "use_regex", true, where);
  step.regex = SplitRegex::Gpt2;
  return step;
}

PreTokenizerStep split_step(const Fields& f, const json& j, const std::string& where) {
  if (!j.contains("pattern") || !j["pattern"].is_object()) f.fail(where + ".pattern", "expected an object");
  const json& pattern = j["pattern"];
  if (!pattern.contains("Regex") || !pattern["Regex"].is_string())
    f.fail(where + ".pattern", "only {\"Regex\": ...} patterns are supported");
  const std::string regex = pattern["Regex"].get<std::string>();
  const auto known = recognize_split_regex(regex);
  if (!known)
    f.fail(where + ".pattern.Regex",
           "regex " + json(regex).dump() + " is not supported (supported: DeepSeek V3's three Split regexes and GPT-2's)");
  const std::string behavior = f.text(j, "behavior", where);
  if (behavior != "Isolated") f.fail(where + ".behavior", "\"" + behavior + "\" is not supported (only \"Isolated\")");
  if (f.flag(j, "invert", false, where)) f.fail(where + ".invert", "invert=true is not supported");
  PreTokenizerStep step;
  step.kind = PreTokenizerStep::Kind::Split;
  step.regex = *known;
  return step;
}

PreTokenizer make_pre_tokenizer(const Fields& f, const json& p) {
  const std::string where = "pre_tokenizer";
  if (p.is_null()) f.fail(where, "missing: only byte-level BPE (a ByteLevel pre-tokenizer) is supported");
  const std::string type = f.type_of(p, where);
  std::vector<PreTokenizerStep> steps;
  if (type == "ByteLevel") {
    steps.push_back(byte_level_step(f, p, where));
  } else if (type == "Sequence") {
    if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array()) f.fail(where + ".pretokenizers", "expected an array");
    const json& list = p["pretokenizers"];
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string w = where + ".pretokenizers[" + std::to_string(i) + "]";
      const std::string t = f.type_of(list[i], w);
      if (t == "Split") steps.push_back(split_step(f, list[i], w));
      else if (t == "ByteLevel") steps.push_back(byte_level_step(f, list[i], w));
      else f.fail(w, "pre-tokenizer \"" + t + "\" is not supported (only Split and ByteLevel)");
    }
  } else {
    f.fail(where, "pre-tokenizer \"" + type + "\" is not supported (only ByteLevel or a Sequence of Split and ByteLevel)");
  }
  size_t byte_levels = 0;
  for (const auto& s : steps) byte_levels += s.kind == PreTokenizerStep::Kind::ByteLevel;
  if (byte_levels != 1 || steps.back().kind != PreTokenizerStep::Kind::ByteLevel)
    f.fail(where, "expected exactly one ByteLevel step, as the last one (byte-level BPE)");
  return PreTokenizer(std::move(steps));
}

std::unique_ptr<BpeModel> make_model(const Fields& f, const json& m, const std::string& label,
                                     std::vector<std::string>& id_to_token) {
  const std::string where = "model";
  const std::string type = f.type_of(m, where);
  if (type != "BPE") f.fail(where, "model \"" + type + "\" is not supported (only BPE)");
  if (m.contains("dropout") && !m["dropout"].is_null() && !(m["dropout"].is_number() && m["dropout"].get<double>() == 0.0))
    f.fail(where + ".dropout", "BPE dropout is not supported");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(key) && !m[key].is_null() && !(m[key].is_string() && m[key].get<std::string>().empty()))
      f.fail(where + "." + key, "not supported by byte-level BPE");
  if (f.flag(m, "byte_fallback", false, where)) f.fail(where + ".byte_fallback", "byte_fallback is not supported");
  if (!m.contains("vocab") || !m["vocab"].is_object()) f.fail(where + ".vocab", "expected an object of token: id");
  std::unordered_map<std::string, int32_t> vocab;
  vocab.reserve(m["vocab"].size());
  for (const auto& [token, id] : m["vocab"].items()) {
    const int32_t i = f.id(id, where + ".vocab[" + json(token).dump() + "]");
    vocab.emplace(token, i);
    if (static_cast<size_t>(i) >= id_to_token.size()) id_to_token.resize(static_cast<size_t>(i) + 1);
    id_to_token[static_cast<size_t>(i)] = token;
  }
  if (!m.contains("merges") || !m["merges"].is_array()) f.fail(where + ".merges", "expected an array");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(m["merges"].size());
  for (size_t i = 0; i < m["merges"].size(); ++i) {
    const json& e = m["merges"][i];
    const std::string w = where + ".merges[" + std::to_string(i) + "]";
    if (e.is_string()) {
      const std::string s = e.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        f.fail(w, "expected \"a b\" (two tokens, one space), got " + e.dump());
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
    } else {
      f.fail(w, "expected \"a b\" or [\"a\", \"b\"]");
    }
  }
  BpeOptions options;
  options.ignore_merges = f.flag(m, "ignore_merges", false, where);
  if (m.contains("unk_token") && !m["unk_token"].is_null()) {
    const std::string unk = f.text(m, "unk_token", where);
    auto it = vocab.find(unk);
    if (it == vocab.end()) f.fail(where + ".unk_token", json(unk).dump() + " is not in model.vocab");
    options.unk_id = it->second;
  }
  return std::make_unique<BpeModel>(std::move(vocab), merges, options, label);
}

std::vector<AddedToken> read_added_tokens(const Fields& f, const json& doc) {
  std::vector<AddedToken> out;
  if (!doc.contains("added_tokens") || doc["added_tokens"].is_null()) return out;
  if (!doc["added_tokens"].is_array()) f.fail("added_tokens", "expected an array");
  for (size_t i = 0; i < doc["added_tokens"].size(); ++i) {
    const json& t = doc["added_tokens"][i];
    const std::string w = "added_tokens[" + std::to_string(i) + "]";
    if (!t.is_object() || !t.contains("id")) f.fail(w, "expected an object with \"id\" and \"content\"");
    AddedToken a;
    a.id = f.id(t["id"], w + ".id");
    a.content = f.text(t, "content", w);
    if (a.content.empty()) f.fail(w + ".content", "empty");
    if (f.flag(t, "single_word", false, w)) f.fail(w + ".single_word", "single_word=true is not supported");
    a.lstrip = f.flag(t, "lstrip", false, w);
    a.rstrip = f.flag(t, "rstrip", false, w);
    a.normalized = f.flag(t, "normalized", !f.flag(t, "special", false, w), w);
    a.special = f.flag(t, "special", false, w);
    out.push_back(std::move(a));
  }
  return out;
}

// Ids of a special token named in a post-processor or tokenizer_config.json.
int32_t special_id(const Fields& f, const Tokenizer::Impl& impl, const BpeModel& bpe, const std::string& name,
                   const std::string& where) {
  for (const AddedToken& a : impl.added)
    if (a.content == name) return a.id;
  auto it = bpe.vocab().find(name);
  if (it == bpe.vocab().end()) f.fail(where, "special token " + json(name).dump() + " is neither an added token nor in model.vocab");
  return it->second;
}

void read_post_processor(const Fields& f, const json& p, const std::string& where, Tokenizer::Impl& impl) {
  if (p.is_null()) return;
  const std::string type = f.type_of(p, where);
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    if (!p.contains("processors") || !p["processors"].is_array()) f.fail(where + ".processors", "expected an array");
    for (size_t i = 0; i < p["processors"].size(); ++i)
      read_post_processor(f, p["processors"][i], where + ".processors[" + std::to_string(i) + "]", impl);
    return;
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    for (const char* key : {"cls", "sep"}) {
      const json& pair = p.contains(key) ? p[key] : json();
      if (!pair.is_array() || pair.size() != 2) f.fail(where + "." + key, "expected [token, id]");
      (std::string(key) == "cls" ? impl.prefix : impl.suffix).push_back(f.id(pair[1], where + "." + key + "[1]"));
    }
    impl.special_source = "post_processor " + type;
    return;
  }
  if (type != "TemplateProcessing")
    f.fail(where, "post-processor \"" + type + "\" is not supported");
  if (!p.contains("single") || !p["single"].is_array()) f.fail(where + ".single", "expected an array");
  const json& specials = p.contains("special_tokens") ? p["special_tokens"] : json::object();
  bool after_sequence = false;
  for (size_t i = 0; i < p["single"].size(); ++i) {
    const json& item = p["single"][i];
    const std::string w = where + ".single[" + std::to_string(i) + "]";
    if (item.contains("Sequence")) {
      after_sequence = true;
      continue;
    }
    if (!item.contains("SpecialToken") || !item["SpecialToken"].contains("id") || !item["SpecialToken"]["id"].is_string())
      f.fail(w, "expected {\"Sequence\": ...} or {\"SpecialToken\": {\"id\": ...}}");
    const std::string name = item["SpecialToken"]["id"].get<std::string>();
    if (!specials.contains(name) || !specials[name].contains("ids") || !specials[name]["ids"].is_array())
      f.fail(where + ".special_tokens", "no ids for " + json(name).dump());
    for (const json& id : specials[name]["ids"])
      (after_sequence ? impl.suffix : impl.prefix).push_back(f.id(id, where + ".special_tokens[" + json(name).dump() + "]"));
  }
  impl.special_source = "post_processor TemplateProcessing";
}

// transformers' Llama tokenizers rebuild the template from add_bos_token/add_eos_token.
void read_tokenizer_config(const Fields& f, const json& config, Tokenizer::Impl& impl) {
  if (!config.is_object() || (!config.contains("add_bos_token") && !config.contains("add_eos_token"))) return;
  impl.prefix.clear();
  impl.suffix.clear();
  auto token_name = [&](const char* key) -> std::string {
    const json& t = config.contains(key) ? config[key] : json();
    if (t.is_string()) return t.get<std::string>();
    if (t.is_object() && t.contains("content") && t["content"].is_string()) return t["content"].get<std::string>();
    f.fail(std::string("tokenizer_config.json ") + key, "expected the token's text");
  };
  if (f.flag(config, "add_bos_token", false, "tokenizer_config.json"))
    impl.prefix.push_back(special_id(f, impl, *impl.bpe, token_name("bos_token"), "tokenizer_config.json bos_token"));
  if (f.flag(config, "add_eos_token", false, "tokenizer_config.json"))
    impl.suffix.push_back(special_id(f, impl, *impl.bpe, token_name("eos_token"), "tokenizer_config.json eos_token"));
  impl.special_source = "tokenizer_config.json add_bos_token/add_eos_token";
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string file = fs::is_directory(path, ec) ? (fs::path(path) / "tokenizer.json").string() : path;
  if (!fs::is_regular_file(file, ec)) throw InputError(file + ": no such tokenizer file");
  json config;
  const fs::path config_path = fs::path(file).parent_path() / "tokenizer_config.json";
  if (fs::is_regular_file(config_path, ec))
    config = io::parse_strict_json(read_file(config_path.string()), config_path.string());
  return from_json(read_file(file), config, file);
}

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, const json& config, const std::string& label) {
  auto impl = std::make_unique<Impl>();
  impl->label = label;
  const Fields f(impl->label);
  const json doc = io::parse_strict_json(tokenizer_json, label);
  if (!doc.is_object()) f.fail("top level", "expected a JSON object (a tokenizer.json)");
  if (!doc.contains("model")) f.fail("model", "missing");
  check_normalizer(f, doc.contains("normalizer") ? doc["normalizer"] : json(), "normalizer");
  impl->pre_tokenizer = make_pre_tokenizer(f, doc.contains("pre_tokenizer") ? doc["pre_tokenizer"] : json());
  impl->bpe = make_model(f, doc["model"], label, impl->id_to_token);
  impl->added = read_added_tokens(f, doc);
  impl->is_added.assign(impl->id_to_token.size(), 0);
  for (const AddedToken& a : impl->added) {
    if (static_cast<size_t>(a.id) >= impl->id_to_token.size()) {
      impl->id_to_token.resize(static_cast<size_t>(a.id) + 1);
      impl->is_added.resize(static_cast<size_t>(a.id) + 1, 0);
    }
    impl->id_to_token[static_cast<size_t>(a.id)] = a.content;
    impl->is_added[static_cast<size_t>(a.id)] = 1;
  }
  impl->matcher = AddedTokenMatcher(impl->added);
  const json& decoder = doc.contains("decoder") ? doc["decoder"] : json();
  impl->byte_level_decoder = decoder.is_null() || (decoder.is_object() && decoder.value("type", "") == "ByteLevel");
  read_post_processor(f, doc.contains("post_processor") ? doc["post_processor"] : json(), "post_processor", *impl);
  read_tokenizer_config(f, config, *impl);
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (const size_t bad = find_invalid_utf8(text); bad != std::string_view::npos)
    throw InputError("text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = impl_->prefix;
  std::u32string code_points;
  std::vector<std::string> pieces;
  for (const TextSegment& segment : impl_->matcher.split(text)) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
      continue;
    }
    decode_utf8(segment.text, code_points);
    pieces.clear();
    impl_->pre_tokenizer.run(code_points, pieces);
    for (const std::string& piece : pieces) impl_->bpe->encode_piece(piece, ids);
  }
  if (add_special_tokens) ids.insert(ids.end(), impl_->suffix.begin(), impl_->suffix.end());
  return ids;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  std::u32string code_points;
  if (const size_t bad = decode_utf8(text, code_points); bad != std::string_view::npos)
    throw InputError("text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  std::vector<std::string> pieces;
  impl_->pre_tokenizer.run(code_points, pieces);
  for (std::string& piece : pieces) piece = byte_level_encode(piece);
  return pieces;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  if (!impl_->byte_level_decoder) throw InputError(impl_->label + ": decoder: only the ByteLevel decoder is supported");
  std::string out;
  std::u32string code_points;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) throw InputError("token id " + std::to_string(id) + " is outside the vocabulary");
    const std::string& token = impl_->id_to_token[static_cast<size_t>(id)];
    if (impl_->is_added[static_cast<size_t>(id)]) {
      out += token;
      continue;
    }
    decode_utf8(token, code_points);
    for (char32_t c : code_points) {
      const int b = char_to_byte(c);
      if (b >= 0) out += static_cast<char>(b);
      else append_utf8(out, c);
    }
  }
  return out;
}

std::string Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return impl_->id_to_token[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  for (const AddedToken& a : impl_->added)
    if (a.content == token) return a.id;
  auto it = impl_->bpe->vocab().find(std::string(token));
  if (it == impl_->bpe->vocab().end()) return std::nullopt;
  return it->second;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_to_token.size()); }
const std::vector<int32_t>& Tokenizer::special_prefix() const { return impl_->prefix; }
const std::vector<int32_t>& Tokenizer::special_suffix() const { return impl_->suffix; }
const std::string& Tokenizer::special_tokens_source() const { return impl_->special_source; }
const std::string& Tokenizer::label() const { return impl_->label; }

}  // namespace fp4kit::calib
