// The tokenizer against encodings made by Hugging Face `tokenizers` (scripts/reference/tokenizer_reference.py):
// a DeepSeek-V3-style and a GPT-2-style tokenizer.json, 130 hand-picked and seeded random strings.
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "calib/tokenizer.h"
#include "test_data.h"

namespace fp4kit::calib {
namespace {

using json = nlohmann::json;

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const json& expected() {
  static const json doc = json::parse(read(testing::test_data("tokenizer/expected.json")));
  return doc;
}

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

TEST(TokenizerReference, DeepSeekStyleMatchesTokenizersLibrary) {
  const Tokenizer tok = Tokenizer::load(testing::test_data("tokenizer/deepseek_style.tokenizer.json"));
  ASSERT_EQ(tok.special_prefix(), std::vector<int32_t>{0});
  size_t cases = 0;
  for (const json& c : expected()["cases"]) {
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE(json(text).dump());
    EXPECT_EQ(tok.pre_tokenize(text), c["deepseek_pieces"].get<std::vector<std::string>>());
    const std::vector<int32_t> ids = tok.encode(text, false);
    EXPECT_EQ(ids, ids_of(c["deepseek_ids"]));
    EXPECT_EQ(tok.encode(text, true), ids_of(c["deepseek_ids_special"]));
    EXPECT_EQ(tok.decode(ids), c["deepseek_decoded"].get<std::string>());
    ++cases;
  }
  EXPECT_GE(cases, 100u);
}

TEST(TokenizerReference, Gpt2StyleMatchesTokenizersLibrary) {
  const std::string path = testing::test_data("tokenizer/gpt2_style.tokenizer.json");
  const Tokenizer tok = Tokenizer::load(path);
  json with_prefix = json::parse(read(path));
  with_prefix["pre_tokenizer"]["add_prefix_space"] = true;
  const Tokenizer prefixed = Tokenizer::from_json(with_prefix.dump(), json(), "gpt2 with add_prefix_space");
  EXPECT_TRUE(tok.special_prefix().empty());
  for (const json& c : expected()["cases"]) {
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE(json(text).dump());
    EXPECT_EQ(tok.pre_tokenize(text), c["gpt2_pieces"].get<std::vector<std::string>>());
    EXPECT_EQ(tok.encode(text, false), ids_of(c["gpt2_ids"]));
    EXPECT_EQ(prefixed.encode(text, false), ids_of(c["gpt2_prefix_space_ids"]));
  }
}

// DeepSeek's own file writes merges as "a b" strings; the library now writes [a, b] pairs. Same model.
TEST(TokenizerReference, MergesAsStringsEncodeTheSame) {
  const std::string path = testing::test_data("tokenizer/deepseek_style.tokenizer.json");
  json doc = json::parse(read(path));
  json strings = json::array();
  for (const json& m : doc["model"]["merges"]) {
    std::string merge = m[0].get<std::string>();
    merge += ' ';
    merge += m[1].get<std::string>();
    strings.push_back(merge);
  }
  doc["model"]["merges"] = strings;
  const Tokenizer as_strings = Tokenizer::from_json(doc.dump(), json(), "merges as strings");
  const Tokenizer as_pairs = Tokenizer::load(path);
  for (const json& c : expected()["cases"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(as_strings.encode(text, false), as_pairs.encode(text, false)) << json(text).dump();
  }
}

}  // namespace
}  // namespace fp4kit::calib
