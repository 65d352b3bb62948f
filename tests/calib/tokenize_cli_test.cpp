// fp4kit tokenize as a user runs it.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "run_command.h"
#include "test_data.h"

namespace fp4kit {
namespace {

TEST(TokenizeCli, PrintsIdsWithBosAndJson) {
  const std::string tok = testing::test_data("tokenizer/deepseek_style.tokenizer.json");
  std::ifstream in(testing::test_data("tokenizer/expected.json"));
  const nlohmann::json expected = nlohmann::json::parse(in);
  const nlohmann::json* hello = nullptr;
  for (const auto& c : expected["cases"])
    if (c["text"] == "Hello, world! It's 2024.") hello = &c;
  ASSERT_NE(hello, nullptr);
  std::string ids;
  for (const auto& id : (*hello)["deepseek_ids_special"]) {
    if (!ids.empty()) ids += ' ';
    ids += std::to_string(id.get<int>());
  }
  const auto r = testing::run_fp4kit("tokenize --tokenizer '" + tok + "' \"Hello, world! It's 2024.\"");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, ids + "\n");
  const auto j = testing::run_fp4kit("tokenize --json --no-special --tokenizer '" + tok + "' \"Hello, world! It's 2024.\"");
  ASSERT_EQ(j.exit_code, 0) << j.output;
  const nlohmann::json report = nlohmann::json::parse(j.output);
  EXPECT_EQ(report["ids"], (*hello)["deepseek_ids"]);
  EXPECT_EQ(report["count"], (*hello)["deepseek_ids"].size());
}

TEST(TokenizeCli, BadTokenizerFileExitsTwoNamingIt) {
  const std::string dir = testing::fresh_temp_dir("tokenize-bad");
  const std::string path = dir + "/tokenizer.json";
  std::ofstream(path) << "{\"model\": {\"type\": \"BPE\",\n  \"vocab\": {,}}}";
  const auto r = testing::run_fp4kit("tokenize --tokenizer '" + dir + "' hello");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("line 2"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace fp4kit
