// Fuzz target: a tokenizer.json as calibrate, eval and serve read it, and text through it. The input
// is a tokenizer.json, optionally followed by a line "#text" and a text to encode (else a fixed
// sample). Loading may refuse the file with fp4kit::Error; encoding may refuse text that is not UTF-8
// the same way. A tokenizer that loads must give ids inside its vocabulary, and decoding what it
// encoded must not fail unless the tokenizer has no ByteLevel decoder (an InputError). Any other
// exception, a crash, a hang, running out of memory or a sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "calib/tokenizer.h"

namespace {

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "FINDING: %s\n", what.c_str());
  std::abort();
}

void check_text(const fp4kit::calib::Tokenizer& t, std::string_view text) {
  for (const bool special : {false, true}) {
    std::vector<int32_t> ids;
    try {
      ids = t.encode(text, special);
    } catch (const fp4kit::InputError&) {
      return;  // not UTF-8
    }
    for (int32_t id : ids)
      if (id < 0 || id >= t.vocab_size())
        finding("id " + std::to_string(id) + " outside the vocabulary of " + std::to_string(t.vocab_size()));
    try {
      (void)t.decode(ids);
    } catch (const fp4kit::InputError&) {
    }
  }
  (void)t.pre_tokenize(text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  constexpr std::string_view kSplit = "\n#text\n";
  const size_t at = input.find(kSplit);
  const std::string_view json = input.substr(0, at);
  const std::string_view text =
      at == std::string_view::npos ? std::string_view("Hello, world! 123 \xC3\xA9t\xC3\xA9  \n\tdone") : input.substr(at + kSplit.size());
  try {
    const fp4kit::calib::Tokenizer t = fp4kit::calib::Tokenizer::from_json(json, nullptr, "fuzz");
    check_text(t, text);
  } catch (const fp4kit::Error&) {
  }
  return 0;
}
