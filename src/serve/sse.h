#pragma once
// Server-Sent Events as OpenAI streams them: every event is one `data: <json>\n\n`, and the stream
// ends with `data: [DONE]\n\n`. JSON is written with invalid UTF-8 replaced (U+FFFD), never thrown.
#include <string>

#include <nlohmann/json.hpp>

namespace fp4kit::serve {

inline std::string json_text(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
inline std::string sse_event(const nlohmann::json& j) { return "data: " + json_text(j) + "\n\n"; }
inline std::string sse_done() { return "data: [DONE]\n\n"; }

}  // namespace fp4kit::serve
