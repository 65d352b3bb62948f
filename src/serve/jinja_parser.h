#pragma once
// Jinja statements and expressions to a syntax tree (jinja_ast.h), with Jinja2's grammar and
// operator precedence, for the subset chat templates use:
//   statements  if / elif / else, for (tuple targets, an "if" filter, else, loop.*), set (a name,
//               names, namespace attributes, a block), break, continue, generation (rendered as
//               its body), comments;
//   expressions literals (adjacent strings joined), lists, tuples, dicts, attributes, subscripts,
//               slices, calls, filters, tests, not / and / or, comparisons and "in", + - * / // %
//               ** ~, inline if/else.
// Everything else (macro, call, filter blocks, include, import, extends, block, with, recursive
// loops, unknown filters, tests, methods or functions) is a TemplateError naming the construct and
// its line, as are syntax errors and nesting deeper than kMaxJinjaDepth.
#include <string>

#include "serve/jinja_ast.h"

namespace fp4kit::serve {

inline constexpr int kMaxJinjaDepth = 200;

JinjaBody parse_jinja(const std::string& source_text, const std::string& source_name);

}  // namespace fp4kit::serve
