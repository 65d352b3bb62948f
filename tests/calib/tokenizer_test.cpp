// Hand-checked cases of the byte-level BPE tokenizer: merges by rank, bytes outside ASCII, emoji, CJK,
// digit groups, whitespace, added tokens, special-token rules, and refusals of what it does not support.
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "calib/tokenizer.h"
#include "calib/tokenizer_bpe.h"
#include "calib/tokenizer_pretokenizer.h"
#include "calib/unicode.h"

namespace fp4kit::calib {
namespace {

using json = nlohmann::json;

const char* const kDeepSeekWords =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

// The ByteLevel spelling of a UTF-8 string.
std::string bl(std::string_view s) { return byte_level_encode(s); }

json deepseek_pre_tokenizer() {
  auto split = [](const std::string& regex) {
    return json{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
  };
  return json{{"type", "Sequence"},
              {"pretokenizers",
               {split("\\p{N}{1,3}"), split("[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"), split(kDeepSeekWords),
                {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
}

// A tokenizer.json whose vocabulary is the 256 byte characters (id = byte value + 10; 0..9 are left
// for added tokens) plus one token per merge, in order.
json tiny_tokenizer(const std::vector<std::pair<std::string, std::string>>& merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    append_utf8(ch, byte_to_char(static_cast<uint8_t>(b)));
    vocab[ch] = b + 10;
  }
  json merge_list = json::array();
  int next = 266;
  for (const auto& [a, b] : merges) {
    if (!vocab.contains(a + b)) vocab[a + b] = next++;
    std::string merge = a;
    merge += ' ';
    merge += b;
    merge_list.push_back(merge);
  }
  return json{{"version", "1.0"},
              {"added_tokens", json::array()},
              {"normalizer", nullptr},
              {"pre_tokenizer", deepseek_pre_tokenizer()},
              {"post_processor", nullptr},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
}

Tokenizer make(const json& doc, const json& config = json()) { return Tokenizer::from_json(doc.dump(), config, "tiny.json"); }

int32_t byte_id(unsigned char b) { return b + 10; }

TEST(Tokenizer, MergesApplyLowestRankFirst) {
  // "abc": with a+b ranked first the result is [ab, c]; with b+c first it is [a, bc].
  const Tokenizer ab_first = make(tiny_tokenizer({{"a", "b"}, {"b", "c"}}));
  const Tokenizer bc_first = make(tiny_tokenizer({{"b", "c"}, {"a", "b"}}));
  const int32_t ab = *ab_first.token_id("ab");
  const int32_t bc = *bc_first.token_id("bc");
  EXPECT_EQ(ab_first.encode("abc", false), (std::vector<int32_t>{ab, byte_id('c')}));
  EXPECT_EQ(bc_first.encode("abc", false), (std::vector<int32_t>{byte_id('a'), bc}));
  // Equal pairs merge left to right; a merged token merges again by its own rank.
  const Tokenizer chain = make(tiny_tokenizer({{"a", "a"}, {"aa", "a"}}));
  EXPECT_EQ(chain.encode("aaaa", false), (std::vector<int32_t>{*chain.token_id("aa"), *chain.token_id("aa")}));
  EXPECT_EQ(chain.encode("aaa", false), (std::vector<int32_t>{*chain.token_id("aaa")}));
}

TEST(Tokenizer, BytesOutsideAsciiEmojiAndCjk) {
  const std::string e_acute = bl("\u00e9");  // C3 A9 -> "Ã©"
  EXPECT_EQ(e_acute, "\u00c3\u00a9");
  const Tokenizer plain = make(tiny_tokenizer({}));
  EXPECT_EQ(plain.encode("\u00e9", false), (std::vector<int32_t>{byte_id(0xC3), byte_id(0xA9)}));
  const Tokenizer merged = make(tiny_tokenizer({{"\u00c3", "\u00a9"}}));
  EXPECT_EQ(merged.encode("caf\u00e9", false),
            (std::vector<int32_t>{byte_id('c'), byte_id('a'), byte_id('f'), *merged.token_id(e_acute)}));
  // An emoji is four bytes; without merges, four byte tokens, and decoding gives it back.
  const std::vector<int32_t> smile = plain.encode("\U0001F600", false);
  EXPECT_EQ(smile, (std::vector<int32_t>{byte_id(0xF0), byte_id(0x9F), byte_id(0x98), byte_id(0x80)}));
  EXPECT_EQ(plain.decode(smile), "\U0001F600");
  // CJK ideographs and kana form their own pieces, apart from Latin letters and CJK punctuation.
  EXPECT_EQ(plain.pre_tokenize("\u4e2d\u6587abc\u3002\u304b\u306a"),
            (std::vector<std::string>{bl("\u4e2d\u6587"), "abc", bl("\u3002"), bl("\u304b\u306a")}));
}

TEST(Tokenizer, DigitsSplitInGroupsOfThree) {
  const Tokenizer t = make(tiny_tokenizer({}));
  EXPECT_EQ(t.pre_tokenize("1234567"), (std::vector<std::string>{"123", "456", "7"}));
  EXPECT_EQ(t.pre_tokenize("v2.10"), (std::vector<std::string>{"v", "2", ".", "10"}));
  // \p{N} includes other numbers: superscripts and circled digits are grouped too.
  EXPECT_EQ(t.pre_tokenize("x\u00b2\u00b3\u2460\u2461"), (std::vector<std::string>{"x", bl("\u00b2\u00b3\u2460"), bl("\u2461")}));
}

TEST(Tokenizer, WhitespaceHandling) {
  const Tokenizer t = make(tiny_tokenizer({}));
  // A space joins the word after it; of a run of spaces, all but the last stand alone.
  EXPECT_EQ(t.pre_tokenize("a  b"), (std::vector<std::string>{"a", bl(" "), bl(" b")}));
  // \s*[\r\n]+ ends after the last line break of a whitespace run; the spaces after it follow as \s+(?!\S).
  EXPECT_EQ(t.pre_tokenize("x\n\n  y"), (std::vector<std::string>{"x", bl("\n\n"), bl(" "), bl(" y")}));
  EXPECT_EQ(t.pre_tokenize("end  "), (std::vector<std::string>{"end", bl("  ")}));
  // Punctuation takes one leading space and the line breaks after it.
  EXPECT_EQ(t.pre_tokenize("a ...\nb"), (std::vector<std::string>{"a", bl(" ...\n"), "b"}));
  // ASCII punctuation directly before ASCII letters stays with them ('s, .NET)...
  EXPECT_EQ(t.pre_tokenize(".NET it's"), (std::vector<std::string>{".NET", bl(" it"), "'s"}));
  // ...but a space before punctuation joins the punctuation first.
  EXPECT_EQ(t.pre_tokenize("a .NET"), (std::vector<std::string>{"a", bl(" ."), "NET"}));
  // A no-break space counts as whitespace for \s, and may lead a word as [^\r\n\p{L}\p{P}\p{S}].
  EXPECT_EQ(t.pre_tokenize("a\u00a0b"), (std::vector<std::string>{"a", bl("\u00a0b")}));
}

TEST(Tokenizer, AddedTokensMatchBeforeBpeLongestFirst) {
  json doc = tiny_tokenizer({{"a", "b"}});
  doc["added_tokens"] = json::array({
      {{"id", 0}, {"content", "<\uff5cbegin\u2581of\u2581sentence\uff5c>"}, {"special", true}, {"normalized", false}},
      {{"id", 1}, {"content", "<x>"}, {"special", false}, {"normalized", false}},
      {{"id", 2}, {"content", "<x><y>"}, {"special", false}, {"normalized", false}},
      {{"id", 3}, {"content", "ab"}, {"special", false}, {"normalized", true}},
  });
  const Tokenizer t = make(doc);
  EXPECT_EQ(t.encode("<\uff5cbegin\u2581of\u2581sentence\uff5c>c", false), (std::vector<int32_t>{0, byte_id('c')}));
  EXPECT_EQ(t.encode("<x><y>", false), (std::vector<int32_t>{2}));
  EXPECT_EQ(t.encode("<x><z>", false),
            (std::vector<int32_t>{1, byte_id('<'), byte_id('z'), byte_id('>')}));
  // The added token "ab" wins over the BPE merge a+b.
  EXPECT_EQ(t.encode("cab", false), (std::vector<int32_t>{byte_id('c'), 3}));
  EXPECT_EQ(t.decode(t.encode("q<x>ab", false)), "q<x>ab");
}

TEST(Tokenizer, SpecialPrefixFromConfigOrTemplate) {
  json doc = tiny_tokenizer({});
  doc["added_tokens"] = json::array({{{"id", 0}, {"content", "<s>"}, {"special", true}},
                                     {{"id", 1}, {"content", "</s>"}, {"special", true}}});
  EXPECT_TRUE(make(doc).special_prefix().empty());
  const json config = {{"add_bos_token", true}, {"add_eos_token", false}, {"bos_token", {{"content", "<s>"}}}, {"eos_token", "</s>"}};
  const Tokenizer from_config = make(doc, config);
  EXPECT_EQ(from_config.encode("a", true), (std::vector<int32_t>{0, byte_id('a')}));
  EXPECT_EQ(from_config.encode("a", false), (std::vector<int32_t>{byte_id('a')}));
  doc["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "</s>", "type_id": 0}}],
      "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
                         "</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}})");
  EXPECT_EQ(make(doc).encode("a", true), (std::vector<int32_t>{0, byte_id('a'), 1}));
  // add_bos_token/add_eos_token in tokenizer_config.json replace the template, as in transformers.
  EXPECT_EQ(make(doc, config).encode("a", true), (std::vector<int32_t>{0, byte_id('a')}));
}

void expect_refused(const json& doc, const std::string& fragment) {
  try {
    make(doc);
    ADD_FAILURE() << "accepted; expected an error containing " << fragment;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tiny.json"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, RefusesWhatItDoesNotImplement) {
  json doc = tiny_tokenizer({});
  doc["pre_tokenizer"]["pretokenizers"][2]["pattern"]["Regex"] = "\\w+";
  expect_refused(doc, "pre_tokenizer.pretokenizers[2].pattern.Regex");
  doc = tiny_tokenizer({});
  doc["normalizer"] = {{"type", "NFC"}};
  expect_refused(doc, "normalizer \"NFC\" is not supported");
  doc = tiny_tokenizer({});
  doc["model"]["type"] = "Unigram";
  expect_refused(doc, "model \"Unigram\"");
  doc = tiny_tokenizer({});
  doc["model"]["merges"] = json::array({"a zz"});
  expect_refused(doc, "model.merges[0]");
  doc = tiny_tokenizer({});
  doc["pre_tokenizer"] = {{"type", "Whitespace"}};
  expect_refused(doc, "pre-tokenizer \"Whitespace\"");
  doc = tiny_tokenizer({});
  doc["added_tokens"] = json::array({{{"id", 0}, {"content", "<w>"}, {"single_word", true}}});
  expect_refused(doc, "single_word");
  try {
    Tokenizer::from_json("{\"model\": {\n\"type\": \"BPE\",,}", json(), "broken.json");
    ADD_FAILURE() << "accepted broken JSON";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("broken.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
  const Tokenizer t = make(tiny_tokenizer({}));
  EXPECT_THROW(t.encode("bad \xff byte", false), InputError);
  EXPECT_THROW(t.decode(std::vector<int32_t>{1 << 20}), InputError);
  EXPECT_THROW(Tokenizer::load("/nonexistent/tokenizer.json"), InputError);
}

// Reference merge for the priority-queue path: find the lowest-rank adjacent pair (leftmost on ties),
// merge it, repeat.
std::vector<int32_t> naive_merge(const Tokenizer& t, const std::vector<std::pair<std::string, std::string>>& merges,
                                 std::string_view bytes) {
  std::vector<std::string> symbols;
  for (char c : bytes) symbols.push_back(bl(std::string_view(&c, 1)));
  while (symbols.size() > 1) {
    size_t best_rank = merges.size(), best_pos = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i)
      for (size_t r = 0; r < best_rank; ++r)
        if (merges[r].first == symbols[i] && merges[r].second == symbols[i + 1]) {
          best_rank = r;
          best_pos = i;
          break;
        }
    if (best_rank == merges.size()) break;
    symbols[best_pos] += symbols[best_pos + 1];
    symbols.erase(symbols.begin() + static_cast<ptrdiff_t>(best_pos) + 1);
  }
  std::vector<int32_t> ids;
  for (const auto& s : symbols) ids.push_back(*t.token_id(s));
  return ids;
}

TEST(Tokenizer, PriorityQueueMergeAndCacheMatchNaiveMerge) {
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"a", "b"}, {"b", "a"}, {"ab", "a"}, {"a", "a"}, {"b", "b"}, {"aa", "b"}, {"ba", "b"}, {"ab", "ab"}, {"c", "a"}, {"bb", "a"}};
  const json doc = tiny_tokenizer(merges);
  const Tokenizer t = make(doc);
  std::unordered_map<std::string, int32_t> vocab;
  for (const auto& [k, v] : doc["model"]["vocab"].items()) vocab[k] = v.get<int32_t>();
  const BpeModel model(vocab, merges, BpeOptions{}, "tiny");
  std::mt19937 rng(7);
  for (int trial = 0; trial < 3000; ++trial) {
    std::string word(1 + rng() % 14, 'a');
    for (char& c : word) c = "abc"[rng() % 3];
    std::vector<int32_t> uncached, cached, again;
    model.encode_piece_uncached(word, uncached);
    model.encode_piece(word, cached);
    model.encode_piece(word, again);
    ASSERT_EQ(uncached, naive_merge(t, merges, word)) << word;
    ASSERT_EQ(cached, uncached) << word;
    ASSERT_EQ(again, uncached) << word;
  }
}

}  // namespace
}  // namespace fp4kit::calib
