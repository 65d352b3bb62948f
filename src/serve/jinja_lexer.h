#pragma once
// Splits a Jinja template into tokens as Jinja2 does with the settings transformers renders chat
// templates with (trim_blocks, lstrip_blocks, keep_trailing_newline off):
//   - line ends \r\n and \r become \n, and one newline at the very end is dropped;
//   - text outside tags is one Text token, after whitespace control: "{%-", "{{-", "{#-" strip all
//     whitespace before the tag, "-%}", "-}}", "-#}" all after it; lstrip_blocks removes the spaces
//     and tabs between a line start and "{%" or "{#" (not "{{"; "{%+" keeps them); trim_blocks
//     removes the one newline right after "%}" or "#}" ("+%}" keeps it);
//   - inside "{{ }}" and "{% %}": names, numbers, string literals (Python escapes decoded) and
//     operators; a tag ends at its closing marker outside brackets, so "}}" inside a string or a
//     dict literal does not end it; comments are dropped.
// TemplateError names the line of an unclosed tag, string or comment, a stray character, or
// "{% raw %}" (not supported).
#include <string>
#include <vector>

namespace fp4kit::serve {

enum class JinjaTokenKind { Text, ExprBegin, ExprEnd, StmtBegin, StmtEnd, Name, String, Integer, Float, Operator, End };

struct JinjaToken {
  JinjaTokenKind kind;
  std::string text;  // Text: the text; String: the decoded value; Name, numbers, operators: as written
  int line = 1;
};

std::vector<JinjaToken> lex_jinja(const std::string& source_text, const std::string& source_name);

}  // namespace fp4kit::serve
