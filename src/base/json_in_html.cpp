#include "base/json_in_html.h"

namespace fp4kit {

std::string json_for_html_script(const nlohmann::json& document) {
  const std::string data = document.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  std::string safe;
  safe.reserve(data.size());
  for (char c : data) {
    if (c == '<')
      safe += "\\u003c";
    else
      safe += c;
  }
  return safe;
}

}  // namespace fp4kit
