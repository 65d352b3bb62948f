#pragma once
// The system's text for an errno value ("No such file or directory"), for error messages.
#include <string>
#include <system_error>

namespace fp4kit {

inline std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

}  // namespace fp4kit
