#include "serve/jinja_lexer.h"

#include <cctype>
#include <cstring>

#include "calib/unicode.h"
#include "serve/jinja_error.h"

namespace fp4kit::serve {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

std::string normalize_newlines(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r') {
      out += '\n';
      if (i + 1 < in.size() && in[i + 1] == '\n') ++i;
    } else {
      out += in[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();  // keep_trailing_newline=False
  return out;
}

class Lexer {
 public:
  Lexer(const std::string& text, const std::string& name) : s_(normalize_newlines(text)), name_(name) {}

  std::vector<JinjaToken> run() {
    bool line_starting = true;
    while (pos_ < s_.size()) {
      size_t at = std::string::npos;
      for (const char* open : {"{{", "{%", "{#"}) at = std::min(at, s_.find(open, pos_));
      if (at == std::string::npos) {
        text(s_.substr(pos_));
        break;
      }
      const char kind = s_[at + 1];
      const char sign = at + 2 < s_.size() && (s_[at + 2] == '-' || s_[at + 2] == '+') ? s_[at + 2] : 0;
      std::string before = s_.substr(pos_, at - pos_);
      const int before_lines = count_lines(before);
      if (sign == '-') {
        size_t end = before.size();
        while (end > 0 && is_space(before[end - 1])) --end;
        before.resize(end);
      } else if (sign != '+' && kind != '{') {  // lstrip_blocks
        const size_t line_start = before.rfind('\n') == std::string::npos ? 0 : before.rfind('\n') + 1;
        if (line_start > 0 || line_starting) {
          bool blank = line_start < before.size();
          for (size_t i = line_start; i < before.size(); ++i) blank = blank && is_space(before[i]);
          if (blank) before.resize(line_start);
        }
      }
      text(before);
      line_ += before_lines;
      pos_ = at + 2 + (sign ? 1 : 0);
      if (kind == '#') line_starting = comment();
      else line_starting = tag(kind == '%');
    }
    tokens_.push_back({JinjaTokenKind::End, "", line_});
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(const std::string& what, int line) const { throw TemplateError(name_, line, what); }
  static int count_lines(const std::string& t) {
    int n = 0;
    for (char c : t) n += c == '\n';
    return n;
  }
  void text(const std::string& t) {
    if (!t.empty()) tokens_.push_back({JinjaTokenKind::Text, t, line_});
  }
  // After a closing marker: "-" strips all whitespace, a statement or comment end without "+"
  // drops one newline (trim_blocks). Returns whether what was consumed ends a line.
  bool after_close(char sign, bool block) {
    bool newline = false;
    if (sign == '-') {
      while (pos_ < s_.size() && is_space(s_[pos_])) newline = s_[pos_++] == '\n', line_ += newline;
    } else if (sign != '+' && block && pos_ < s_.size() && s_[pos_] == '\n') {
      ++pos_, ++line_;
      newline = true;
    }
    return newline;
  }
  bool comment() {
    const int start = line_;
    const size_t end = s_.find("#}", pos_);
    if (end == std::string::npos) fail("a comment \"{#\" is never closed", start);
    const char sign = end > pos_ && (s_[end - 1] == '-' || s_[end - 1] == '+') ? s_[end - 1] : 0;
    line_ += count_lines(s_.substr(pos_, end - pos_));
    pos_ = end + 2;
    return after_close(sign, true);
  }
  bool tag(bool statement) {
    const int start = line_;
    const char* close = statement ? "%}" : "}}";
    tokens_.push_back({statement ? JinjaTokenKind::StmtBegin : JinjaTokenKind::ExprBegin, "", line_});
    std::string brackets;
    bool first = true;
    for (;;) {
      while (pos_ < s_.size() && is_space(s_[pos_])) line_ += s_[pos_++] == '\n';
      if (pos_ >= s_.size()) fail(std::string("a tag \"") + (statement ? "{%" : "{{") + "\" is never closed", start);
      if (brackets.empty()) {
        char sign = 0;
        if ((s_[pos_] == '-' || (statement && s_[pos_] == '+')) && s_.compare(pos_ + 1, 2, close) == 0) sign = s_[pos_];
        if (sign || s_.compare(pos_, 2, close) == 0) {
          pos_ += 2 + (sign ? 1 : 0);
          tokens_.push_back({statement ? JinjaTokenKind::StmtEnd : JinjaTokenKind::ExprEnd, "", line_});
          return after_close(sign, statement);
        }
      }
      const size_t before = tokens_.size();
      token(brackets);
      if (statement && first && tokens_.size() > before && tokens_.back().kind == JinjaTokenKind::Name &&
          tokens_.back().text == "raw")
        fail("\"{% raw %}\" is not supported", line_);
      first = false;
    }
  }
  void token(std::string& brackets) {
    const char c = s_[pos_];
    if (is_name_start(c)) {
      const size_t b = pos_;
      while (pos_ < s_.size() && is_name_char(s_[pos_])) ++pos_;
      tokens_.push_back({JinjaTokenKind::Name, s_.substr(b, pos_ - b), line_});
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      number();
    } else if (c == '\'' || c == '"') {
      string_literal(c);
    } else {
      static const char* const ops[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(",
                                        ")", "{", "}", "<", ">", "=", ".", ":", "|", ",", ";"};
      for (const char* op : ops) {
        const size_t n = std::strlen(op);
        if (s_.compare(pos_, n, op) != 0) continue;
        if (n == 1 && std::strchr("([{", op[0])) brackets += op[0] == '(' ? ')' : op[0] == '[' ? ']' : '}';
        if (n == 1 && std::strchr(")]}", op[0])) {
          if (brackets.empty()) fail(std::string("unexpected '") + op + "'", line_);
          if (brackets.back() != op[0]) fail(std::string("unexpected '") + op + "', expected '" + brackets.back() + "'", line_);
          brackets.pop_back();
        }
        tokens_.push_back({JinjaTokenKind::Operator, op, line_});
        pos_ += n;
        return;
      }
      fail(std::string("unexpected character '") + c + "' in a tag", line_);
    }
  }
  void number() {
    const size_t b = pos_;
    const auto digits = [&] {
      while (pos_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[pos_])) ||
                                  (s_[pos_] == '_' && pos_ + 1 < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_ + 1])))))
        ++pos_;
    };
    digits();
    bool is_float = false;
    if (pos_ + 1 < s_.size() && s_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(s_[pos_ + 1]))) {
      ++pos_;
      digits();
      is_float = true;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      size_t e = pos_ + 1;
      if (e < s_.size() && (s_[e] == '+' || s_[e] == '-')) ++e;
      if (e < s_.size() && std::isdigit(static_cast<unsigned char>(s_[e]))) {
        pos_ = e;
        digits();
        is_float = true;
      }
    }
    std::string t;
    for (size_t i = b; i < pos_; ++i)
      if (s_[i] != '_') t += s_[i];
    tokens_.push_back({is_float ? JinjaTokenKind::Float : JinjaTokenKind::Integer, t, line_});
  }
  uint32_t hex(size_t digits, int line) {
    if (pos_ + digits > s_.size()) fail("a truncated escape in a string", line);
    uint32_t v = 0;
    for (size_t i = 0; i < digits; ++i) {
      const char h = s_[pos_++];
      if (!std::isxdigit(static_cast<unsigned char>(h))) fail("a malformed escape in a string", line);
      v = v * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v < 0xE000)) fail("an escape in a string names no character", line);
    return v;
  }
  // Python's escapes, as Jinja2 decodes its string literals ("unicode-escape").
  void string_literal(char quote) {
    const int start = line_;
    ++pos_;
    std::string v;
    for (;;) {
      if (pos_ >= s_.size()) fail("a string is never closed", start);
      const char c = s_[pos_++];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        v += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("a string is never closed", start);
      const char e = s_[pos_++];
      switch (e) {
        case '\n': ++line_; break;  // a line continuation
        case '\\': v += '\\'; break;
        case '\'': v += '\''; break;
        case '"': v += '"'; break;
        case 'a': v += '\a'; break;
        case 'b': v += '\b'; break;
        case 'f': v += '\f'; break;
        case 'n': v += '\n'; break;
        case 'r': v += '\r'; break;
        case 't': v += '\t'; break;
        case 'v': v += '\v'; break;
        case 'x': calib::append_utf8(v, hex(2, line_)); break;
        case 'u': calib::append_utf8(v, hex(4, line_)); break;
        case 'U': calib::append_utf8(v, hex(8, line_)); break;
        case 'N': fail("named escapes (\\N{...}) are not supported", line_);
        default:
          if (e >= '0' && e <= '7') {
            uint32_t o = static_cast<uint32_t>(e - '0');
            for (int i = 0; i < 2 && pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '7'; ++i) o = o * 8 + static_cast<uint32_t>(s_[pos_++] - '0');
            calib::append_utf8(v, o);
          } else {
            v += '\\';  // Python keeps an unknown escape as it is
            v += e;
          }
      }
    }
    tokens_.push_back({JinjaTokenKind::String, v, start});
  }

  std::string s_, name_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<JinjaToken> tokens_;
};

}  // namespace

std::vector<JinjaToken> lex_jinja(const std::string& source_text, const std::string& source_name) {
  return Lexer(source_text, source_name).run();
}

}  // namespace fp4kit::serve
