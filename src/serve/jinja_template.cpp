#include "serve/jinja_template.h"

#include "serve/jinja_error.h"
#include "serve/jinja_parser.h"

namespace fp4kit::serve {

namespace {

// The line of the first byte that is not part of valid UTF-8, or 0.
int first_invalid_utf8_line(const std::string& s) {
  int line = 1;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\n') ++line;
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return line;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return line;
      cp = (cp << 6) | (b & 0x3F);
    }
    const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return line;
    i += n;
  }
  return 0;
}

}  // namespace

JinjaTemplate JinjaTemplate::parse(const std::string& text, const std::string& source_name) {
  if (const int line = first_invalid_utf8_line(text)) throw TemplateError(source_name, line, "the template is not valid UTF-8");
  JinjaTemplate t;
  t.body_ = parse_jinja(text, source_name);
  t.source_ = source_name;
  return t;
}

std::string JinjaTemplate::render(const JinjaData& context, const JinjaLimits& limits) const {
  return render_jinja(body_, source_, context, limits);
}

}  // namespace fp4kit::serve
