#include "io/strict_json.h"

#include <string>
#include <unordered_set>
#include <vector>

#include "base/error.h"
#include "io/quote_name.h"

namespace fp4kit::io {

namespace {

using json = nlohmann::json;

constexpr int kMaxDepth = 64;

// nlohmann's messages quote the bytes last read; keep the message on one line.
std::string one_line(std::string_view s) {
  std::string out;
  for (char c : s) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) ? ' ' : c;
  return out;
}

}  // namespace

nlohmann::json parse_strict_json(std::string_view text, std::string_view label,
                                 std::string_view top_level_key) {
  const std::string prefix = std::string(label) + ": ";
  // nlohmann stops at a NUL byte as if the input ended there, so "{}\0garbage" would pass. A NUL is
  // never valid JSON (inside strings it must be escaped), so refuse it up front.
  if (const size_t nul = text.find('\0'); nul != text.npos)
    throw InputError(prefix + "not valid JSON: NUL byte at offset " + std::to_string(nul));
  // One key set per open object; keys of the top object also name the context of nested errors.
  std::vector<std::unordered_set<std::string>> open_objects;
  std::string current_top_key;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxDepth)
          throw InputError(prefix + "JSON nests deeper than " + std::to_string(kMaxDepth) + " levels");
        if (event == json::parse_event_t::object_start) open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        open_objects.pop_back();
        break;
      case json::parse_event_t::key: {
        std::string key = parsed.get<std::string>();
        if (depth == 1) current_top_key = key;
        if (!open_objects.back().insert(key).second) {
          if (depth == 1)
            throw InputError(prefix + std::string(top_level_key) + " " + quote_name(key) + " appears twice");
          throw InputError(prefix + std::string(top_level_key) + " " + quote_name(current_top_key) + ": key " +
                           quote_name(key) + " appears twice");
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), on_event);
  } catch (const json::exception& e) {
    // e.g. "[json.exception.parse_error.101] parse error at line 1, column 9: syntax error ..."
    std::string_view what = e.what();
    if (auto bracket = what.find("] "); what.starts_with("[json.exception.") && bracket != what.npos)
      what.remove_prefix(bracket + 2);
    throw InputError(prefix + "not valid JSON: " + one_line(what));
  }
}

}  // namespace fp4kit::io
