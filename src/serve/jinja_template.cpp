#include "serve/jinja_template.h"

#include <algorithm>

#include "calib/unicode.h"
#include "serve/jinja_error.h"
#include "serve/jinja_parser.h"

namespace fp4kit::serve {

JinjaTemplate JinjaTemplate::parse(const std::string& text, const std::string& source_name) {
  if (const size_t bad = calib::find_invalid_utf8(text); bad != std::string::npos)
    throw TemplateError(source_name, 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<ptrdiff_t>(bad), '\n')),
                        "the template is not valid UTF-8");
  JinjaTemplate t;
  t.body_ = parse_jinja(text, source_name);
  t.source_ = source_name;
  return t;
}

std::string JinjaTemplate::render(const JinjaData& context, const JinjaLimits& limits) const {
  return render_jinja(body_, source_, context, limits);
}

}  // namespace fp4kit::serve
