#include "base/byte_size.h"

#include <cctype>
#include <cmath>
#include <string>

#include "base/error.h"

namespace fp4kit {

uint64_t parse_byte_size(std::string_view text, std::string_view what) {
  const std::string s(text);
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(s, &pos);
  } catch (...) {
    pos = 0;
  }
  std::string unit = s.substr(pos);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 0;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KB" || unit == "K") mult = 1e3;
  else if (unit == "MB" || unit == "M") mult = 1e6;
  else if (unit == "GB" || unit == "G") mult = 1e9;
  else if (unit == "TB" || unit == "T") mult = 1e12;
  else if (unit == "KIB") mult = 1024.0;
  else if (unit == "MIB") mult = 1024.0 * 1024;
  else if (unit == "GIB") mult = 1024.0 * 1024 * 1024;
  if (pos == 0 || mult == 0 || !(value > 0) || !std::isfinite(value * mult) || value * mult > 1.8e19)
    throw InputError(std::string(what) + ": expected a size such as 5GB, 500MB or 4GiB, got '" + s + "'");
  return static_cast<uint64_t>(std::llround(value * mult));
}

}  // namespace fp4kit
