#pragma once
// A JSON document to embed in an HTML page's <script type="application/json"> element: ASCII only,
// with every '<' escaped, so that no string in it (a tensor or file name) can end the element.
#include <nlohmann/json.hpp>
#include <string>

namespace fp4kit {

std::string json_for_html_script(const nlohmann::json& document);

}  // namespace fp4kit
