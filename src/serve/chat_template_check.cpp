#include "serve/chat_template_check.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace fp4kit::serve {

namespace {

// The template text and the file it came from; "" when the model ships none.
std::pair<std::string, std::string> shipped_template(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  if (const auto jinja = dir / "chat_template.jinja"; std::filesystem::is_regular_file(jinja)) {
    std::ifstream in(jinja, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return {s.str(), jinja.string()};
  }
  const auto config = dir / "tokenizer_config.json";
  if (!std::filesystem::is_regular_file(config)) return {"", ""};
  std::ifstream in(config, std::ios::binary);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw InputError(config.string() + " is not valid JSON");
  const auto it = j.find("chat_template");
  if (it == j.end() || it->is_null()) return {"", ""};
  if (it->is_string()) return {it->get<std::string>(), config.string() + " (chat_template)"};
  // transformers' list form: [{"name": "default", "template": ...}, ...]
  if (it->is_array())
    for (const nlohmann::json& t : *it)
      if (t.is_object() && t.value("name", "") == "default" && t.contains("template") && t["template"].is_string())
        return {t["template"].get<std::string>(), config.string() + " (chat_template \"default\")"};
  throw InputError(config.string() + ": chat_template is neither a string nor a list with a \"default\" template");
}

bool has(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

}  // namespace

std::string check_chat_template(const std::string& model_dir, bool force_v4) {
  if (force_v4) return "chat format: DeepSeek V4 encoder rules (--chat-format deepseek-v4)";
  const auto [text, source] = shipped_template(model_dir);
  if (text.empty()) return "chat format: DeepSeek V4 encoder rules (the model ships no chat template)";
  if (has(text, "\uff5cDSML\uff5c") && has(text, "tool_calls") && has(text, "<tool_result>"))
    return "chat format: DeepSeek V4 encoder rules (" + source + " writes DeepSeek V4's format)";
  const std::string force = "; --chat-format deepseek-v4 renders DeepSeek V4's encoder format instead";
  if (has(text, "<\uff5ctool\u2581calls\u2581begin\uff5c>"))
    throw InputError(source + " is a DeepSeek V3/R1-style chat template (<\uff5ctool\u2581calls\u2581begin\uff5c> tool calls), "
                              "a different format than DeepSeek V4's, the only model this server runs" + force);
  throw InputError(source + " holds a chat template fp4kit does not know (it renders no Jinja)" + force);
}

}  // namespace fp4kit::serve
