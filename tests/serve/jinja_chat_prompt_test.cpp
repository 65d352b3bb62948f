// Real chat templates (tests/data/serve/templates/: DeepSeek V3, R1, V3.1 in vLLM's and llama.cpp's
// copies, Llama 3.1, ChatML) rendered by fp4kit's Jinja engine must give, byte for byte, the prompts
// Jinja2 renders through them in transformers' environment
// (scripts/reference/jinja_chat_reference.py -> tests/data/serve/jinja_chat_prompts.json): each
// conversation goes in as a client's request body, through the request parser and the variables
// serve passes. Where Jinja2 refused (raise_exception) or failed, the engine must too.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "serve/api_error.h"
#include "serve/jinja_chat_prompt.h"
#include "serve/jinja_error.h"
#include "serve/jinja_template.h"
#include "serve/openai_request.h"
#include "test_data.h"

namespace fp4kit::serve {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(JinjaChatPrompt, RealTemplatesRenderAsJinja2Does) {
  std::ifstream in(testing::test_data("serve/jinja_chat_prompts.json"));
  const nlohmann::ordered_json cases = nlohmann::ordered_json::parse(in);
  ASSERT_GE(cases.size(), 100u);
  std::map<std::string, JinjaTemplate> templates;
  size_t prompts = 0, refusals = 0, failures = 0;
  for (const nlohmann::ordered_json& c : cases) {
    const std::string name = c["template"].get<std::string>();
    if (!templates.count(name)) {
      const std::string path = testing::test_data("serve/templates/" + name);
      templates.emplace(name, JinjaTemplate::parse(read_file(path), path));
    }
    const std::string label = name + " " + c["name"].get<std::string>() + (c["thinking"].get<bool>() ? " (thinking)" : " (chat)");
    const nlohmann::ordered_json& body = c["request"];
    const ChatRequest request = parse_chat_request(body);
    const TemplateSpecialTokens tokens{c["bos_token"].get<std::string>(), c["eos_token"].get<std::string>()};
    const JinjaData context = jinja_chat_context(body, request, tokens);
    if (c.contains("prompt")) {
      ++prompts;
      try {
        EXPECT_EQ(templates.at(name).render(context), c["prompt"].get<std::string>()) << label;
      } catch (const std::exception& e) {
        ADD_FAILURE() << label << ": " << e.what();
      }
    } else if (c.contains("error")) {
      ++refusals;
      try {
        templates.at(name).render(context);
        ADD_FAILURE() << label << ": rendered, but the template refuses it";
      } catch (const TemplateRaised& e) {
        EXPECT_EQ(e.message(), c["error"].get<std::string>()) << label;
      }
      // Through serve's entry point the refusal is a 400 naming the template's message.
      try {
        render_jinja_chat(templates.at(name), body, request, tokens);
        ADD_FAILURE() << label;
      } catch (const ApiError& e) {
        EXPECT_EQ(e.status(), 400);
        EXPECT_NE(std::string(e.what()).find(c["error"].get<std::string>()), std::string::npos) << e.what();
      }
    } else {
      ++failures;
      try {
        templates.at(name).render(context);
        ADD_FAILURE() << label << ": rendered, but Jinja2 fails with " << c["failure"];
      } catch (const TemplateRaised& e) {
        ADD_FAILURE() << label << ": raised " << e.what();
      } catch (const TemplateError&) {
      }
    }
  }
  EXPECT_EQ(templates.size(), 7u);
  EXPECT_GE(prompts, 110u);
  EXPECT_GE(refusals, 2u);
  EXPECT_GE(failures, 4u);
}

}  // namespace
}  // namespace fp4kit::serve
