#pragma once
// JSON parsing for files we validate: rejects what nlohmann::json silently accepts or could choke on.
#include <string_view>

#include <nlohmann/json.hpp>

namespace fp4kit::io {

// Parses `text` as one JSON value. Throws InputError("<label>: ...") on invalid JSON or UTF-8, on a
// duplicate key in any object (nlohmann would keep only the last one, hiding e.g. a second tensor of
// the same name), and on nesting deeper than 64 levels (no valid file nests deeply; this bounds any
// recursion over the result). `top_level_key` names what the top object's keys are, for messages:
// "tensor 'x' appears twice" rather than "key 'x' appears twice".
nlohmann::json parse_strict_json(std::string_view text, std::string_view label,
                                 std::string_view top_level_key = "key");

}  // namespace fp4kit::io
