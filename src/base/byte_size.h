#pragma once
// Sizes in bytes as users write them on the command line.
#include <cstdint>
#include <string_view>

namespace fp4kit {

// "5GB", "500MB", "4GiB", "1e9", "123" (bytes). InputError naming `what` on anything else.
uint64_t parse_byte_size(std::string_view text, std::string_view what);

}  // namespace fp4kit
