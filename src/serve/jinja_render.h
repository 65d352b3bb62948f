#pragma once
// Renders a parsed chat template (jinja_parser.h) with Jinja2's semantics as transformers sets
// them up: undefined variables print as nothing; "set" inside a for loop lasts for that iteration
// (a namespace() carries values out); loop.index, index0, revindex, revindex0, first, last,
// length, previtem, nextitem; tojson is transformers' (json.dumps with ensure_ascii=False, and its
// indent, separators and sort_keys); raise_exception(message) throws TemplateRaised; range() is
// bounded as Jinja2's sandbox bounds it (100,000 items).
// Since a template is untrusted model data, rendering is bounded: more than `max_output_bytes` of
// text (also in a string or list being built) or more than `max_steps` expression evaluations and
// loop iterations is a TemplateError, as is every type error, with the template's line.
#include <cstdint>
#include <string>

#include "serve/jinja_ast.h"
#include "serve/jinja_value.h"

namespace fp4kit::serve {

struct JinjaLimits {
  size_t max_output_bytes = size_t{16} << 20;
  uint64_t max_steps = 20'000'000;
};

// `context`: an object of the template's variables (messages, tools, add_generation_prompt ...).
std::string render_jinja(const JinjaBody& body, const std::string& source_name, const JinjaData& context,
                         const JinjaLimits& limits = {});

}  // namespace fp4kit::serve
