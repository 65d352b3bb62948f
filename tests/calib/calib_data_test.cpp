// Calibration data: formats, packing into rows, BOS, the built-in corpus and bad input.
#include <fstream>
#include <numeric>

#include <gtest/gtest.h>

#include "base/error.h"
#include "calib/calib_data.h"
#include "calib/default_corpus.h"
#include "calib/tokenizer.h"
#include "calib/unicode.h"
#include "test_data.h"

namespace fp4kit::calib {
namespace {

const Tokenizer& deepseek_style() {
  static const Tokenizer tok = Tokenizer::load(testing::test_data("tokenizer/deepseek_style.tokenizer.json"));
  return tok;
}

std::string write(const std::string& dir, const std::string& name, const std::string& content) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(CalibData, PackerStartsEveryRowWithBosAndDropsThePartialRow) {
  SamplePacker packer({3, 4, 0, 0}, {0});
  packer.add({0, 5, 6, 7, 8, 9});
  packer.add({0, 10});
  CalibBatch b;
  b.source = "test";
  b = packer.finish(std::move(b));
  EXPECT_EQ(b.rows, 2);
  EXPECT_EQ(b.seq_len, 4);
  EXPECT_EQ(b.ids, (std::vector<int64_t>{0, 5, 6, 7, 0, 8, 9, 0}));
  EXPECT_EQ(b.notes.size(), 2u);  // fewer rows than asked, partial row dropped
  // Without a prefix the stream is cut as it is.
  SamplePacker plain({2, 3, 0, 0}, {});
  plain.add({1, 2, 3, 4});
  plain.add({5, 6});
  EXPECT_EQ(plain.finish(CalibBatch{}).ids, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
}

TEST(CalibData, TextFileIsTokenizedPerLineWithBos) {
  const std::string dir = testing::fresh_temp_dir("calib-text");
  const std::string path = write(dir, "data.txt", "Hello world\r\n\n  \nThe quick brown fox jumps over the lazy dog.\n");
  const CalibBatch b = load_calib_data(path, DataFormat::Auto, &deepseek_style(), {1, 6, 0, 0});
  EXPECT_EQ(b.format, DataFormat::Text);
  EXPECT_EQ(b.rows, 1);
  std::vector<int32_t> expected = deepseek_style().encode("Hello world", true);
  const std::vector<int32_t> second = deepseek_style().encode("The quick brown fox jumps over the lazy dog.", true);
  expected.insert(expected.end(), second.begin(), second.end());
  expected.resize(6);
  EXPECT_EQ(b.ids, std::vector<int64_t>(expected.begin(), expected.end()));
  // Many rows: each starts with BOS (id 0).
  const CalibBatch many = load_calib_data(path, DataFormat::Text, &deepseek_style(), {50, 5, 0, 0});
  ASSERT_GE(many.rows, 2);
  for (int64_t r = 0; r < many.rows; ++r) EXPECT_EQ(many.ids[static_cast<size_t>(r * 5)], 0);
  EXPECT_FALSE(many.notes.empty());  // ran out before 50 rows
}

TEST(CalibData, JsonLinesAndDetection) {
  const std::string dir = testing::fresh_temp_dir("calib-jsonl");
  const std::string jsonl = write(dir, "data.jsonl", "{\"text\": \"Hello world\"}\n\n{\"text\": \"caf\\u00e9 \\u4e2d\\u6587\"}\n");
  const std::string sniffed = write(dir, "data.txt", "\n {\"text\": \"Hello world\"}\n");
  const std::string plain = write(dir, "notes", "just text\n");
  const std::string ids = write(dir, "batch.ids", "0 5 6\n");
  EXPECT_EQ(detect_data_format(jsonl), DataFormat::JsonLines);
  EXPECT_EQ(detect_data_format(sniffed), DataFormat::JsonLines);
  EXPECT_EQ(detect_data_format(plain), DataFormat::Text);
  EXPECT_EQ(detect_data_format(ids), DataFormat::TokenIds);
  EXPECT_EQ(detect_data_format(testing::test_data("calib/oracle/calib_ids.safetensors")), DataFormat::Safetensors);
  const CalibBatch b = load_calib_data(jsonl, DataFormat::Auto, &deepseek_style(), {1, 4, 0, 0});
  const std::vector<int32_t> hello = deepseek_style().encode("Hello world", true);
  EXPECT_EQ(b.ids, std::vector<int64_t>(hello.begin(), hello.begin() + 4));
  EXPECT_EQ(b.samples_read, 1);
}

TEST(CalibData, SafetensorsIdsAsStored) {
  const std::string path = testing::test_data("calib/oracle/calib_ids.safetensors");
  const CalibBatch b = load_calib_data(path, DataFormat::Auto, nullptr, {4, 96, 1048576, 129280});
  EXPECT_EQ(b.rows, 4);
  EXPECT_EQ(b.seq_len, 96);
  EXPECT_EQ(std::vector<int64_t>(b.ids.begin(), b.ids.begin() + 8), (std::vector<int64_t>{0, 801, 876, 688, 107, 244, 730, 185}));
  EXPECT_EQ(std::accumulate(b.ids.begin(), b.ids.end(), int64_t{0}), 193643);
  const CalibBatch cut = load_calib_data(path, DataFormat::Auto, nullptr, {2, 10, 0, 1024});
  EXPECT_EQ(cut.rows, 2);
  EXPECT_EQ(cut.seq_len, 10);
  EXPECT_EQ(cut.ids[10], 0);  // second row starts with its BOS
  EXPECT_NE(error_of([&] { load_calib_data(path, DataFormat::Auto, nullptr, {4, 97, 0, 0}); }).find("fewer than --seq-len 97"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_calib_data(path, DataFormat::Auto, nullptr, {4, 96, 0, 500}); }).find("outside the vocabulary"),
            std::string::npos);
}

// Token ids carry their own shape: samples 0 and seq_len 0 take every stored sequence as stored,
// the same batch as naming the file's [4, 96] in flags, without the "fewer than asked" note.
TEST(CalibData, TokenIdsDefaultToTheStoredShape) {
  const std::string path = testing::test_data("calib/oracle/calib_ids.safetensors");
  const CalibBatch stored = load_calib_data(path, DataFormat::Auto, nullptr, {0, 0, 1048576, 129280});
  const CalibBatch named = load_calib_data(path, DataFormat::Auto, nullptr, {4, 96, 1048576, 129280});
  EXPECT_EQ(stored.rows, 4);
  EXPECT_EQ(stored.seq_len, 96);
  EXPECT_EQ(stored.ids, named.ids);
  EXPECT_TRUE(stored.notes.empty()) << stored.notes.front();
  const std::string dir = testing::fresh_temp_dir("calib-ids-default");
  const std::string text_ids = dir + "/three.ids";
  std::ofstream(text_ids) << "1 2 3 4 5\n6 7 8 9 10\n11 12 13 14 15\n";
  const CalibBatch t = load_calib_data(text_ids, DataFormat::Auto, nullptr, {0, 0, 0, 100});
  EXPECT_EQ(t.rows, 3);
  EXPECT_EQ(t.seq_len, 5);
  ASSERT_EQ(t.ids.size(), 15u);
  EXPECT_EQ(t.ids.back(), 15);
  // A line of separators only is an empty sequence, not a batch of length 0 (found by calib_data_fuzz).
  const std::string commas = dir + "/commas.ids";
  std::ofstream(commas) << ",\n";
  EXPECT_NE(error_of([&] { load_calib_data(commas, DataFormat::Auto, nullptr, {0, 0, 0, 100}); }).find("no token ids"),
            std::string::npos);
  // Text has no shape of its own: samples 0 stays an error there.
  const std::string text = dir + "/a.txt";
  std::ofstream(text) << "hello\n";
  EXPECT_NE(error_of([&] { load_calib_data(text, DataFormat::Auto, &deepseek_style(), {0, 8, 0, 0}); }).find("--samples"),
            std::string::npos);
}

TEST(CalibData, TokenIdText) {
  const std::string dir = testing::fresh_temp_dir("calib-ids");
  const std::string path = write(dir, "batch.ids", "1 2 3 4\n\n5\t6 7 8\n");
  const CalibBatch b = load_calib_data(path, DataFormat::Auto, nullptr, {5, 3, 0, 100});
  EXPECT_EQ(b.rows, 2);
  EXPECT_EQ(b.ids, (std::vector<int64_t>{1, 2, 3, 5, 6, 7}));
  EXPECT_EQ(load_calib_data(path, DataFormat::Auto, nullptr, {5, 0, 0, 100}).seq_len, 4);
  const std::string bad = write(dir, "bad.ids", "1 2 3\n4 x 6\n");
  EXPECT_NE(error_of([&] { load_calib_data(bad, DataFormat::Auto, nullptr, {5, 3, 0, 0}); }).find("bad.ids:2: 'x' is not a token id"),
            std::string::npos);
  const std::string big = write(dir, "big.ids", "1 2 3\n4 500 6\n");
  EXPECT_NE(error_of([&] { load_calib_data(big, DataFormat::Auto, nullptr, {5, 3, 0, 100}); }).find("big.ids:2: id 500"),
            std::string::npos);
  const std::string ragged = write(dir, "ragged.ids", "1 2 3\n4 5\n");
  EXPECT_NE(error_of([&] { load_calib_data(ragged, DataFormat::Auto, nullptr, {5, 3, 0, 0}); }).find("ragged.ids:2: 2 ids"),
            std::string::npos);
}

TEST(CalibData, BadInputNamesFileAndLine) {
  const std::string dir = testing::fresh_temp_dir("calib-bad");
  const Tokenizer* tok = &deepseek_style();
  const std::string empty = write(dir, "empty.txt", "\n \n");
  EXPECT_NE(error_of([&] { load_calib_data(empty, DataFormat::Auto, tok, {1, 8, 0, 0}); }).find("empty.txt: no samples"),
            std::string::npos);
  const std::string latin1 = write(dir, "latin1.txt", "fine\nalso fine\ncaf\xe9\n");
  EXPECT_NE(error_of([&] { load_calib_data(latin1, DataFormat::Auto, tok, {4, 8, 0, 0}); }).find("latin1.txt:3: not valid UTF-8"),
            std::string::npos);
  const std::string badjson = write(dir, "bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": \"no\"}\n");
  EXPECT_NE(error_of([&] { load_calib_data(badjson, DataFormat::Auto, tok, {4, 8, 0, 0}); }).find("bad.jsonl:2:"),
            std::string::npos);
  const std::string ok = write(dir, "ok.txt", "Hello world\n");
  EXPECT_NE(error_of([&] { load_calib_data(ok, DataFormat::Auto, tok, {1, 4096, 2048, 0}); }).find("longer than the model allows"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_calib_data(ok, DataFormat::Auto, nullptr, {1, 8, 0, 0}); }).find("needs the model's tokenizer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_calib_data(ok, DataFormat::Auto, tok, {1, 1000, 0, 0}); }).find("not one full sample"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_calib_data(dir + "/missing.txt", DataFormat::Auto, tok, {1, 8, 0, 0}); }).find("missing.txt"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_calib_data(ok, DataFormat::Auto, tok, {0, 8, 0, 0}); }).find("--samples"), std::string::npos);
}

TEST(CalibData, BuiltInCorpusIsVariedAndPacks) {
  size_t bytes = 0, non_ascii_docs = 0;
  for (std::string_view doc : default_corpus()) {
    EXPECT_EQ(find_invalid_utf8(doc), std::string_view::npos);
    bytes += doc.size();
    non_ascii_docs += std::any_of(doc.begin(), doc.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
  }
  EXPECT_GE(default_corpus().size(), 12u);
  EXPECT_GE(bytes, 6000u);
  EXPECT_GE(non_ascii_docs, 5u);
  const CalibBatch b = default_calib_data(deepseek_style(), {8, 128, 0, 0});
  EXPECT_EQ(b.rows, 8);
  EXPECT_EQ(b.ids.size(), 8u * 128u);
  for (int64_t r = 0; r < b.rows; ++r) EXPECT_EQ(b.ids[static_cast<size_t>(r * 128)], 0);
}

}  // namespace
}  // namespace fp4kit::calib
