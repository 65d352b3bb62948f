#pragma once
// A Jinja chat template, read once and rendered per request: the subset of Jinja2 that chat
// templates use (jinja_parser.h lists it), rendered as transformers' apply_chat_template renders
// it (jinja_render.h). Reading refuses text that is not UTF-8, syntax errors and anything outside
// the subset, with the source, the line and the construct; rendering is bounded (JinjaLimits).
#include <string>

#include "serve/jinja_ast.h"
#include "serve/jinja_render.h"
#include "serve/jinja_value.h"

namespace fp4kit::serve {

class JinjaTemplate {
 public:
  // TemplateError (jinja_error.h) when the template cannot be served.
  static JinjaTemplate parse(const std::string& text, const std::string& source_name);
  // TemplateRaised when the template calls raise_exception, TemplateError for any other failure.
  std::string render(const JinjaData& context, const JinjaLimits& limits = {}) const;
  const std::string& source_name() const { return source_; }

 private:
  JinjaBody body_;
  std::string source_;
};

}  // namespace fp4kit::serve
