// The OpenAI service over the tiny checkpoint with a DeepSeek V3.1 Jinja template as the model's
// chat format, without HTTP: /tokenize of a conversation gives the tokens of the prompt Jinja2
// rendered (tests/data/serve/jinja_chat_prompts.json), a chat reply is served with its usage, and
// the template's raise_exception is a 400 in OpenAI's error shape.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "../engine/engine_test_util.h"
#include "serve/chat_template_check.h"
#include "serve/openai_service.h"

namespace fp4kit::serve {
namespace {

using nlohmann::json;

TEST(ServeJinjaService, TheModelsTemplateRendersTheChatPrompt) {
  const std::string dir = testing::fresh_temp_dir("serve-jinja");
  std::ifstream in(testing::test_data("serve/templates/deepseek_v31_llama_cpp.jinja"), std::ios::binary);
  std::ostringstream text;
  text << "{% if messages[0]['content'] == 'boom' %}{{ raise_exception('boom is refused') }}{% endif %}\n" << in.rdbuf();
  std::ofstream(std::filesystem::path(dir) / "chat_template.jinja", std::ios::binary) << text.str();

  ServiceOptions o;
  o.ctx_size = 512;
  o.chat_format = resolve_chat_format(dir, false);
  ASSERT_NE(o.chat_format.jinja, nullptr);
  OpenAIService service(o);
  engine::EngineOptions eo;
  eo.threads = 2;
  service.load(testing::tiny_dir(), testing::test_data("serve/tokenizer.json"), eo);
  const auto call = [&](const std::string& path, const json& body) {
    const HttpReply r = service.handle("POST", path, "", body.dump());
    return std::make_pair(r.status, json::parse(r.body));
  };

  std::ifstream golden_in(testing::test_data("serve/jinja_chat_prompts.json"));
  const json cases = json::parse(golden_in);
  size_t checked = 0;
  for (const json& c : cases) {
    if (c["template"] != "deepseek_v31_llama_cpp.jinja" || !c.contains("prompt")) continue;
    const auto [status, rendered] = call("/tokenize", c["request"]);
    ASSERT_EQ(status, 200) << rendered;
    const auto [status2, expected] = call("/tokenize", {{"prompt", c["prompt"]}, {"add_special_tokens", false}});
    ASSERT_EQ(status2, 200);
    EXPECT_EQ(rendered["tokens"], expected["tokens"]) << c["name"] << (c["thinking"].get<bool>() ? " (thinking)" : " (chat)");
    ++checked;
  }
  EXPECT_GE(checked, 18u);

  const json messages = json::array({{{"role", "user"}, {"content", "Hi"}}});
  const auto [status, reply] = call("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 3}, {"temperature", 0}});
  ASSERT_EQ(status, 200) << reply;
  EXPECT_EQ(reply["usage"]["prompt_tokens"], call("/tokenize", {{"messages", messages}}).second["count"]);
  EXPECT_TRUE(reply["choices"][0]["message"].contains("reasoning_content")) << reply;  // the prompt ends in <think>

  const auto [refused_status, refused] = call("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "boom"}}}}});
  EXPECT_EQ(refused_status, 400);
  EXPECT_EQ(refused["error"]["type"], "invalid_request_error");
  EXPECT_EQ(refused["error"]["code"], "chat_template_error");
  EXPECT_EQ(refused["error"]["message"], "the model's chat template refused the request: boom is refused");
  service.shutdown();
}

}  // namespace
}  // namespace fp4kit::serve
