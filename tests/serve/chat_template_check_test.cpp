// The chat template a model ships decides whether fp4kit serve renders DeepSeek V4's encoder format:
// none or V4's own format is served, a V3-style or unknown template is refused with the reason and
// the flag that forces the V4 rules.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "serve/chat_template_check.h"

namespace fp4kit::serve {
namespace {

struct ModelDir {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("fp4kit-chat-template-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  ModelDir() { std::filesystem::create_directories(dir); }
  ~ModelDir() { std::filesystem::remove_all(dir); }
  void write(const std::string& name, const std::string& text) const { std::ofstream(dir / name, std::ios::binary) << text; }
};

std::string refusal(const ModelDir& m) {
  try {
    check_chat_template(m.dir.string(), false);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(ChatTemplateCheck, NoTemplateOrV4sFormatIsServed) {
  ModelDir m;
  EXPECT_NE(check_chat_template(m.dir.string(), false).find("ships no chat template"), std::string::npos);
  m.write("tokenizer_config.json", R"({"bos_token": "x"})");
  EXPECT_NE(check_chat_template(m.dir.string(), false).find("ships no chat template"), std::string::npos);
  m.write("chat_template.jinja", "{{ bos_token }}...<\uff5cDSML\uff5ctool_calls>...<tool_result>{{ c }}</tool_result>");
  EXPECT_NE(check_chat_template(m.dir.string(), false).find("chat_template.jinja writes DeepSeek V4"), std::string::npos);
}

TEST(ChatTemplateCheck, V3StyleAndUnknownTemplatesAreRefusedUnlessForced) {
  ModelDir m;
  m.write("tokenizer_config.json",
          R"({"chat_template": "{{bos_token}}{%- for message in messages %}{{'<｜Assistant｜><｜tool▁calls▁begin｜>'}}{%- endfor %}"})");
  std::string why = refusal(m);
  EXPECT_NE(why.find("V3/R1-style"), std::string::npos) << why;
  EXPECT_NE(why.find("tokenizer_config.json"), std::string::npos) << why;
  EXPECT_NE(why.find("--chat-format deepseek-v4"), std::string::npos) << why;
  EXPECT_NE(check_chat_template(m.dir.string(), true).find("--chat-format deepseek-v4"), std::string::npos);

  m.write("tokenizer_config.json", R"({"chat_template": [{"name": "default", "template": "<|im_start|>{{ m }}"}]})");
  why = refusal(m);
  EXPECT_NE(why.find("does not know"), std::string::npos) << why;
  m.write("tokenizer_config.json", R"({"chat_template": 7})");
  EXPECT_NE(refusal(m).find("neither a string"), std::string::npos);
  m.write("tokenizer_config.json", "{not json");
  EXPECT_NE(refusal(m).find("not valid JSON"), std::string::npos);
}

}  // namespace
}  // namespace fp4kit::serve
