#pragma once
// Names from input files go into one-line error messages: quote them, escape control characters
// (a tensor name may hold "\n"), and cut absurdly long ones.
#include <string>
#include <string_view>

namespace fp4kit::io {

// 'name' with control bytes as \xNN, a backslash as \\, and at most ~200 bytes of the name.
std::string quote_name(std::string_view name);

}  // namespace fp4kit::io
