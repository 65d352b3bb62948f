// The chat template a model ships decides how fp4kit serve renders chat prompts: none or V4's own
// format by DeepSeek V4's encoder rules, a DeepSeek V3/R1/V3.1-style (or other) template by the
// Jinja engine with the model's special tokens, and a template outside the engine's subset is
// refused with the file, the line, the construct and the flag that forces the V4 rules.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "serve/chat_template.h"
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
  void remove(const std::string& name) const { std::filesystem::remove(dir / name); }
};

std::string refusal(const ModelDir& m) {
  try {
    resolve_chat_format(m.dir.string(), false);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

bool mentions(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

TEST(ChatTemplateCheck, NoTemplateOrV4sFormatIsServedByTheEncoder) {
  ModelDir m;
  ChatFormat f = resolve_chat_format(m.dir.string(), false);
  EXPECT_TRUE(mentions(f.description, "ships no chat template")) << f.description;
  EXPECT_EQ(f.jinja, nullptr);
  m.write("tokenizer_config.json", R"({"bos_token": "x"})");
  EXPECT_EQ(resolve_chat_format(m.dir.string(), false).jinja, nullptr);
  m.write("chat_template.jinja", "{{ bos_token }}...<\uff5cDSML\uff5ctool_calls>...<tool_result>{{ c }}</tool_result>");
  f = resolve_chat_format(m.dir.string(), false);
  EXPECT_TRUE(mentions(f.description, "chat_template.jinja writes DeepSeek V4")) << f.description;
  EXPECT_EQ(f.jinja, nullptr);
}

TEST(ChatTemplateCheck, V3StyleTemplatesAreRenderedWithTheModelsTokens) {
  ModelDir m;
  m.write("tokenizer_config.json",
          R"({"bos_token": {"content": "<B>", "lstrip": false}, "eos_token": "<E>", "chat_template": "{{bos_token}}{%- for message in messages %}{{'<｜User｜>' + message['content'] + '<｜Assistant｜><｜tool▁calls▁begin｜>'}}{%- endfor %}{{ eos_token }}"})");
  const ChatFormat f = resolve_chat_format(m.dir.string(), false);
  ASSERT_NE(f.jinja, nullptr);
  EXPECT_TRUE(mentions(f.description, "tokenizer_config.json (chat_template)")) << f.description;
  EXPECT_EQ(f.tokens.bos, "<B>");
  EXPECT_EQ(f.tokens.eos, "<E>");
  EXPECT_EQ(f.jinja->render({{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"bos_token", f.tokens.bos}, {"eos_token", f.tokens.eos}}),
            "<B><\uff5cUser\uff5c>hi<\uff5cAssistant\uff5c><\uff5ctool\u2581calls\u2581begin\uff5c><E>");
  EXPECT_EQ(resolve_chat_format(m.dir.string(), true).jinja, nullptr);  // --chat-format deepseek-v4

  // chat_template.jinja comes before tokenizer_config.json; without special tokens named, DeepSeek's.
  m.write("tokenizer_config.json", R"({})");
  m.write("chat_template.jinja", "{{ bos_token }}|{{ eos_token }}");
  const ChatFormat g = resolve_chat_format(m.dir.string(), false);
  ASSERT_NE(g.jinja, nullptr);
  EXPECT_EQ(g.jinja->render({{"bos_token", g.tokens.bos}, {"eos_token", g.tokens.eos}}), std::string(kBosToken) + "|" + kEosToken);
  m.remove("chat_template.jinja");

  m.write("tokenizer_config.json", R"({"chat_template": [{"name": "default", "template": "<|im_start|>{{ m }}"}]})");
  EXPECT_TRUE(mentions(resolve_chat_format(m.dir.string(), false).description, "(chat_template \"default\")"));
}

TEST(ChatTemplateCheck, TemplatesOutsideTheSubsetAndBadConfigsAreRefused) {
  ModelDir m;
  m.write("chat_template.jinja", "{{ bos_token }}\n{% macro greet(x) %}hi{% endmacro %}\n");
  std::string why = refusal(m);
  EXPECT_TRUE(mentions(why, "chat_template.jinja:2: ")) << why;
  EXPECT_TRUE(mentions(why, "macro")) << why;
  EXPECT_TRUE(mentions(why, "--chat-format deepseek-v4")) << why;
  EXPECT_EQ(resolve_chat_format(m.dir.string(), true).jinja, nullptr);
  m.remove("chat_template.jinja");

  m.write("tokenizer_config.json", R"({"chat_template": "{{ messages | wordcount }}"})");
  why = refusal(m);
  EXPECT_TRUE(mentions(why, "tokenizer_config.json (chat_template):1: the filter 'wordcount' is not supported")) << why;
  m.write("tokenizer_config.json", R"({"chat_template": 7})");
  EXPECT_TRUE(mentions(refusal(m), "neither a string"));
  m.write("tokenizer_config.json", "{not json");
  EXPECT_TRUE(mentions(refusal(m), "not valid JSON"));
}

}  // namespace
}  // namespace fp4kit::serve
