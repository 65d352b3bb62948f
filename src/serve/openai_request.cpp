#include "serve/openai_request.h"

#include <cmath>
#include <random>

#include "serve/api_error.h"

namespace fp4kit::serve {

namespace {

using nlohmann::json;

// The field's value, or nullptr when it is absent or null (clients send null for "default").
const json* field(const json& body, const char* name) {
  const auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::string type_name(const json& v) { return v.type_name(); }

double number_field(const json& body, const char* name, double def, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number()) throw invalid_request(name, std::string("'") + name + "' must be a number, not " + type_name(*v));
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    throw invalid_request(name, std::string("'") + name + "' must be between " + json(lo).dump() + " and " + json(hi).dump() +
                                    " (got " + v->dump() + ")");
  return x;
}

std::optional<int64_t> integer_field(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number_integer())
    throw invalid_request(name, std::string("'") + name + "' must be an integer, not " +
                                    (v->is_number_float() ? "a fractional number" : type_name(*v)));
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    throw invalid_request(name, std::string("'") + name + "' is too large (got " + v->dump() + ")");
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi)
    throw invalid_request(name, std::string("'") + name + "' must be between " + std::to_string(lo) + " and " +
                                    std::to_string(hi) + " (got " + std::to_string(x) + ")");
  return x;
}

bool bool_field(const json& body, const char* name, bool def) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_boolean()) throw invalid_request(name, std::string("'") + name + "' must be a boolean, not " + type_name(*v));
  return v->get<bool>();
}

std::string string_field(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) return "";
  if (!v->is_string()) throw invalid_request(name, std::string("'") + name + "' must be a string, not " + type_name(*v));
  return v->get<std::string>();
}

void refuse_unless(bool ok, const char* name, const std::string& why) {
  if (!ok) throw invalid_request(name, std::string("'") + name + "': " + why);
}

std::vector<std::string> stop_field(const json& body) {
  const json* v = field(body, "stop");
  if (!v) return {};
  std::vector<std::string> out;
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    refuse_unless(v->size() <= 16, "stop", "at most 16 stop strings");
    for (const json& s : *v) {
      refuse_unless(s.is_string(), "stop", "every stop sequence must be a string, not " + type_name(s));
      out.push_back(s.get<std::string>());
    }
  } else {
    throw invalid_request("stop", "'stop' must be a string or an array of strings, not " + type_name(*v));
  }
  for (const std::string& s : out) refuse_unless(!s.empty(), "stop", "a stop sequence is empty");
  return out;
}

// The fields both endpoints share; chat also reads max_completion_tokens and its logprobs flags.
GenerationRequest parse_generation(const json& body, bool chat) {
  if (!body.is_object()) throw invalid_request("", "the request body must be a JSON object");
  GenerationRequest g;
  g.model = string_field(body, "model");
  g.stream = bool_field(body, "stream", false);
  if (const json* so = field(body, "stream_options"); so && !so->is_object())
    throw invalid_request("stream_options", "'stream_options' must be an object, not " + type_name(*so));
  g.max_tokens = integer_field(body, "max_tokens", 1, INT64_MAX);
  if (chat)
    if (auto m = integer_field(body, "max_completion_tokens", 1, INT64_MAX)) g.max_tokens = m;
  SamplingParams& s = g.sampling;
  s.temperature = number_field(body, "temperature", 1.0, 0.0, 100.0);
  s.top_p = number_field(body, "top_p", 1.0, 0.0, 1.0);
  refuse_unless(s.top_p > 0.0, "top_p", "must be greater than 0");
  const int64_t top_k = integer_field(body, "top_k", -1, INT32_MAX).value_or(0);
  s.top_k = top_k < 0 ? 0 : top_k;  // -1 means "no limit" in vLLM
  s.min_p = number_field(body, "min_p", 0.0, 0.0, 1.0);
  if (const json* seed = field(body, "seed")) {
    if (!seed->is_number_integer()) throw invalid_request("seed", "'seed' must be an integer, not " + type_name(*seed));
    s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : static_cast<uint64_t>(seed->get<int64_t>());
  } else {
    s.seed = std::random_device{}() * 0x100000000ull + std::random_device{}();
  }
  g.stop = stop_field(body);
  g.ignore_eos = bool_field(body, "ignore_eos", false);
  refuse_unless(integer_field(body, "n", INT64_MIN, INT64_MAX).value_or(1) == 1, "n", "only n = 1 is supported");
  refuse_unless(!field(body, "logit_bias") || field(body, "logit_bias")->empty(), "logit_bias", "not supported");
  refuse_unless(number_field(body, "presence_penalty", 0.0, -2.0, 2.0) == 0.0, "presence_penalty", "only 0 is supported");
  refuse_unless(number_field(body, "frequency_penalty", 0.0, -2.0, 2.0) == 0.0, "frequency_penalty", "only 0 is supported");
  if (chat) {
    g.logprobs = bool_field(body, "logprobs", false);
    s.top_logprobs = integer_field(body, "top_logprobs", 0, 20).value_or(0);
    refuse_unless(g.logprobs || s.top_logprobs == 0, "top_logprobs", "needs \"logprobs\": true");
  } else {
    // Completions: logprobs is the number of alternatives (0..5 in OpenAI's API; 20 here).
    if (const json* lp = field(body, "logprobs"); lp && lp->is_boolean()) {
      g.logprobs = lp->get<bool>();
    } else if (auto n = integer_field(body, "logprobs", 0, 20)) {
      g.logprobs = true;
      s.top_logprobs = *n;
    }
    refuse_unless(!bool_field(body, "echo", false), "echo", "not supported");
    refuse_unless(integer_field(body, "best_of", INT64_MIN, INT64_MAX).value_or(1) == 1, "best_of", "only 1 is supported");
    refuse_unless(string_field(body, "suffix").empty(), "suffix", "not supported");
  }
  s.logprobs = g.logprobs;  // the draw computes them only for a request that reports them
  return g;
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts, joined by
// `separator` (DeepSeek's encoder joins a tool result's parts with a blank line).
std::string message_content(const json& content, size_t index, const std::string& separator = "") {
  const std::string where = "messages[" + std::to_string(index) + "].content";
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) throw invalid_request(where, "'" + where + "' must be a string or an array of text parts");
  std::string text;
  bool first = true;
  for (const json& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      throw invalid_request(where, "'" + where + "': only {\"type\": \"text\", \"text\": \"...\"} parts are supported");
    if (!first) text += separator;
    first = false;
    text += part["text"].get<std::string>();
  }
  return text;
}

// An assistant message's tool_calls: [{"id", "type": "function", "function": {"name", "arguments"}}].
std::vector<ToolCall> message_tool_calls(const json& calls, const std::string& where) {
  if (!calls.is_array()) throw invalid_request(where, "'" + where + "' must be an array");
  std::vector<ToolCall> out;
  for (size_t i = 0; i < calls.size(); ++i) {
    const json& c = calls[i];
    const std::string at = where + "[" + std::to_string(i) + "]";
    if (!c.is_object()) throw invalid_request(at, "'" + at + "' must be an object");
    if (const json* type = field(c, "type"); type && *type != "function")
      throw invalid_request(at + ".type", "'" + at + ".type' must be \"function\"");
    const json* fn = field(c, "function");
    if (!fn || !fn->is_object()) throw invalid_request(at + ".function", "'" + at + ".function' must be an object");
    ToolCall call;
    call.id = string_field(c, "id");
    const json* name = field(*fn, "name");
    if (!name || !name->is_string() || name->get<std::string>().empty())
      throw invalid_request(at + ".function.name", "'" + at + ".function.name' must be a non-empty string");
    call.name = name->get<std::string>();
    const json* args = field(*fn, "arguments");
    if (!args || !args->is_string())
      throw invalid_request(at + ".function.arguments", "'" + at + ".function.arguments' must be a string of JSON");
    call.arguments = args->get<std::string>();
    // Text that is not JSON is kept (the encoder wraps it as one "arguments" parameter); JSON that
    // is not an object has no parameters to write.
    const json parsed = json::parse(call.arguments, nullptr, /*allow_exceptions=*/false);
    if (!parsed.is_discarded() && !parsed.is_object())
      throw invalid_request(at + ".function.arguments", "'" + at + ".function.arguments' must be a JSON object");
    out.push_back(std::move(call));
  }
  return out;
}

// `tools`: [{"type": "function", "function": {"name", "description"?, "parameters"?}}], read from
// the body with its key order (the schemas go into the prompt as JSON text).
std::vector<nlohmann::ordered_json> request_tools(const nlohmann::ordered_json& body) {
  const auto it = body.find("tools");
  if (it == body.end() || it->is_null()) return {};
  if (!it->is_array()) throw invalid_request("tools", "'tools' must be an array");
  std::vector<nlohmann::ordered_json> out;
  for (size_t i = 0; i < it->size(); ++i) {
    const nlohmann::ordered_json& t = (*it)[i];
    const std::string at = "tools[" + std::to_string(i) + "]";
    if (!t.is_object() || !t.contains("type") || t["type"] != "function")
      throw invalid_request(at, "'" + at + "' must be {\"type\": \"function\", \"function\": {...}}");
    if (!t.contains("function") || !t["function"].is_object())
      throw invalid_request(at + ".function", "'" + at + ".function' must be an object");
    const nlohmann::ordered_json& fn = t["function"];
    if (!fn.contains("name") || !fn["name"].is_string() || fn["name"].get<std::string>().empty())
      throw invalid_request(at + ".function.name", "'" + at + ".function.name' must be a non-empty string");
    if (fn.contains("parameters") && !fn["parameters"].is_object() && !fn["parameters"].is_null())
      throw invalid_request(at + ".function.parameters", "'" + at + ".function.parameters' must be an object");
    out.push_back(fn);
  }
  return out;
}

ToolChoice tool_choice_field(const json& body) {
  const json* v = field(body, "tool_choice");
  if (!v || *v == "auto") return ToolChoice::Auto;
  if (*v == "none") return ToolChoice::None;
  if (*v == "required" || v->is_object())
    throw invalid_request("tool_choice", "'tool_choice': only \"auto\" and \"none\" are supported (forcing a call needs "
                                         "constrained decoding, which this server does not do)");
  throw invalid_request("tool_choice", "'tool_choice' must be \"auto\" or \"none\", not " + v->dump());
}

}  // namespace

json parse_json_body(const std::string& body) {
  try {
    return json::parse(body);
  } catch (const json::exception& e) {  // syntax errors, and numbers beyond double (1e400)
    throw ApiError(400, "invalid_request_error", "invalid_json", std::string("the request body is not valid JSON: ") + e.what());
  }
}

CompletionRequest parse_completion_request(const json& body) {
  CompletionRequest r;
  r.generation = parse_generation(body, false);
  const json* p = field(body, "prompt");
  if (!p) throw invalid_request("prompt", "'prompt' is required");
  if (p->is_string()) {
    r.prompt = p->get<std::string>();
  } else if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
    r.prompt = (*p)[0].get<std::string>();
  } else if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) {
    r.prompt_is_ids = true;
    for (const json& id : *p) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
        throw invalid_request("prompt", "'prompt': token ids must be non-negative integers (got " + id.dump() + ")");
      r.prompt_ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
  } else if (p->is_array() && p->size() > 1) {
    throw invalid_request("prompt", "'prompt': one prompt per request (batches of prompts are not supported)");
  } else {
    throw invalid_request("prompt", "'prompt' must be a string or an array of token ids");
  }
  if (!r.prompt_is_ids && r.prompt.empty()) throw invalid_request("prompt", "'prompt' is empty");
  return r;
}

nlohmann::ordered_json parse_ordered_json_body(const std::string& body) {
  try {
    return nlohmann::ordered_json::parse(body);
  } catch (const nlohmann::ordered_json::exception& e) {
    throw ApiError(400, "invalid_request_error", "invalid_json", std::string("the request body is not valid JSON: ") + e.what());
  }
}

ChatRequest parse_chat_request(const json& body) { return parse_chat_request(nlohmann::ordered_json(body)); }

ChatRequest parse_chat_request(const nlohmann::ordered_json& ordered) {
  const json body(ordered);  // key order matters only for the tool schemas, read from `ordered`
  ChatRequest r;
  r.generation = parse_generation(body, true);
  const json* m = field(body, "messages");
  if (!m) throw invalid_request("messages", "'messages' is required");
  if (!m->is_array() || m->empty()) throw invalid_request("messages", "'messages' must be a non-empty array");
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) throw invalid_request(where, "'" + where + "' must be an object");
    ChatMessage c;
    const json* role = field(msg, "role");
    if (!role || !role->is_string()) throw invalid_request(where + ".role", "'" + where + ".role' must be a string");
    c.role = role->get<std::string>();
    if (c.role == "developer") c.role = "system";
    if (c.role != "system" && c.role != "user" && c.role != "assistant" && c.role != "tool")
      throw invalid_request(where + ".role", "'" + where + ".role': \"" + c.role +
                                                 "\" is not supported (system, developer, user, assistant or tool)");
    const json content = msg.contains("content") ? msg["content"] : json(nullptr);
    if (c.role == "tool") {
      if (content.is_null()) throw invalid_request(where + ".content", "'" + where + ".content' is required for a tool message");
      c.content = message_content(content, i, "\n\n");
      c.tool_call_id = string_field(msg, "tool_call_id");
    } else {
      c.content = message_content(content, i);
    }
    for (const char* name : {"reasoning_content", "reasoning"}) {
      const json* rc = field(msg, name);
      if (!rc || !c.reasoning_content.empty()) continue;
      if (!rc->is_string()) throw invalid_request(where + "." + name, "'" + where + "." + name + "' must be a string");
      c.reasoning_content = rc->get<std::string>();
    }
    if (const json* calls = field(msg, "tool_calls"); calls && c.role == "assistant")
      c.tool_calls = message_tool_calls(*calls, where + ".tool_calls");
    r.messages.push_back(std::move(c));
  }
  const std::string& last = r.messages.back().role;
  if (last != "user" && last != "tool")
    throw invalid_request("messages", "'messages' must end with a user or tool message (continuing an assistant turn is not supported)");
  if (const json* kw = field(body, "chat_template_kwargs")) {
    if (!kw->is_object()) throw invalid_request("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    r.thinking = bool_field(*kw, "thinking", bool_field(*kw, "enable_thinking", true));
  }
  r.tool_choice = tool_choice_field(body);
  r.tools = request_tools(ordered);
  if (r.tool_choice == ToolChoice::None) r.tools.clear();  // the model is not told about them
  bool_field(body, "parallel_tool_calls", true);           // type-checked; several calls are always allowed
  return r;
}

}  // namespace fp4kit::serve
