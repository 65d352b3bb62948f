#include "serve/jinja_chat_prompt.h"

#include "serve/api_error.h"
#include "serve/jinja_error.h"

namespace fp4kit::serve {

JinjaData jinja_chat_context(const nlohmann::ordered_json& body, const ChatRequest& request, const TemplateSpecialTokens& tokens) {
  JinjaData messages = JinjaData::array();
  const nlohmann::ordered_json& sent = body.at("messages");  // parse_chat_request has checked its shape
  for (size_t i = 0; i < sent.size() && i < request.messages.size(); ++i) {
    JinjaData m = sent[i];
    m["role"] = request.messages[i].role;
    if (m.contains("content") && !m["content"].is_null()) m["content"] = request.messages[i].content;
    else m["content"] = nullptr;
    messages.push_back(std::move(m));
  }
  JinjaData context = JinjaData::object();
  if (const auto kwargs = body.find("chat_template_kwargs"); kwargs != body.end() && kwargs->is_object())
    for (const auto& [key, value] : kwargs->items()) context[key] = value;
  context["thinking"] = request.thinking;
  context["enable_thinking"] = request.thinking;
  context["messages"] = std::move(messages);
  const auto tools = body.find("tools");
  const bool with_tools = tools != body.end() && tools->is_array() && !request.tools.empty();
  context["tools"] = with_tools ? JinjaData(*tools) : JinjaData(nullptr);
  context["add_generation_prompt"] = true;
  context["bos_token"] = tokens.bos;
  context["eos_token"] = tokens.eos;
  return context;
}

std::string render_jinja_chat(const JinjaTemplate& chat_template, const nlohmann::ordered_json& body,
                              const ChatRequest& request, const TemplateSpecialTokens& tokens) {
  try {
    return chat_template.render(jinja_chat_context(body, request, tokens));
  } catch (const TemplateRaised& e) {
    throw ApiError(400, "invalid_request_error", "chat_template_error",
                   "the model's chat template refused the request: " + e.message(), "messages");
  } catch (const TemplateError& e) {
    throw ApiError(400, "invalid_request_error", "chat_template_error",
                   std::string("the model's chat template failed on the request: ") + e.what(), "messages");
  }
}

}  // namespace fp4kit::serve
