#include "serve/chat_template_check.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "serve/chat_template.h"
#include "serve/deepseek_v3_tool_calls.h"
#include "serve/jinja_error.h"

namespace fp4kit::serve {

namespace {

struct ShippedTemplate {
  std::string text, source;  // "" when the model ships none
  nlohmann::json tokenizer_config;
};

nlohmann::json read_tokenizer_config(const std::filesystem::path& config) {
  if (!std::filesystem::is_regular_file(config)) return nlohmann::json::object();
  std::ifstream in(config, std::ios::binary);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw InputError(config.string() + " is not valid JSON");
  return j;
}

ShippedTemplate shipped_template(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  const auto config = dir / "tokenizer_config.json";
  ShippedTemplate t{"", "", read_tokenizer_config(config)};
  if (const auto jinja = dir / "chat_template.jinja"; std::filesystem::is_regular_file(jinja)) {
    std::ifstream in(jinja, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    t.text = s.str();
    t.source = jinja.string();
    return t;
  }
  if (!t.tokenizer_config.is_object()) return t;
  const auto it = t.tokenizer_config.find("chat_template");
  if (it == t.tokenizer_config.end() || it->is_null()) return t;
  if (it->is_string()) {
    t.text = it->get<std::string>();
    t.source = config.string() + " (chat_template)";
    return t;
  }
  // transformers' list form: [{"name": "default", "template": ...}, ...]
  if (it->is_array())
    for (const nlohmann::json& entry : *it)
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") && entry["template"].is_string()) {
        t.text = entry["template"].get<std::string>();
        t.source = config.string() + " (chat_template \"default\")";
        return t;
      }
  throw InputError(config.string() + ": chat_template is neither a string nor a list with a \"default\" template");
}

// tokenizer_config.json's bos_token / eos_token: a string, or an added-token object {"content": ...}.
std::string special_token(const nlohmann::json& config, const char* key, const char* fallback) {
  if (!config.is_object() || !config.contains(key)) return fallback;
  const nlohmann::json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

bool has(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

}  // namespace

ChatFormat resolve_chat_format(const std::string& model_dir, bool force_v4) {
  if (force_v4) return {"chat format: DeepSeek V4 encoder rules (--chat-format deepseek-v4)", nullptr, {}, ToolCallSyntax::DeepSeekV4};
  const ShippedTemplate t = shipped_template(model_dir);
  if (t.text.empty())
    return {"chat format: DeepSeek V4 encoder rules (the model ships no chat template)", nullptr, {}, ToolCallSyntax::DeepSeekV4};
  if (has(t.text, "\uff5cDSML\uff5c") && has(t.text, "tool_calls") && has(t.text, "<tool_result>"))
    return {"chat format: DeepSeek V4 encoder rules (" + t.source + " writes DeepSeek V4's format)", nullptr, {},
            ToolCallSyntax::DeepSeekV4};
  try {
    auto parsed = std::make_shared<const JinjaTemplate>(JinjaTemplate::parse(t.text, t.source));
    TemplateSpecialTokens tokens{special_token(t.tokenizer_config, "bos_token", kBosToken),
                                 special_token(t.tokenizer_config, "eos_token", kEosToken)};
    std::optional<ToolCallSyntax> calls;
    if (has(t.text, kToolCallsBegin)) calls = ToolCallSyntax::DeepSeekV3;
    return {"chat format: the model's Jinja template " + t.source + (calls ? " (DeepSeek V3 tool calls read back)" : ""),
            std::move(parsed), std::move(tokens), calls};
  } catch (const TemplateError& e) {
    throw InputError(std::string(e.what()) + " (fp4kit renders a subset of Jinja, docs/serve.md; "
                     "--chat-format deepseek-v4 renders DeepSeek V4's encoder format instead)");
  }
}

}  // namespace fp4kit::serve
