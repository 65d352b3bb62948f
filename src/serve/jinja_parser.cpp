#include "serve/jinja_parser.h"

#include <cstdlib>

#include "serve/jinja_builtins.h"
#include "serve/jinja_error.h"
#include "serve/jinja_lexer.h"

namespace fp4kit::serve {

namespace {

using K = JinjaTokenKind;

JinjaExprPtr make(JinjaExprKind kind, int line) {
  auto e = std::make_unique<JinjaExpr>();
  e->kind = kind;
  e->line = line;
  return e;
}

class Parser {
 public:
  Parser(std::vector<JinjaToken> tokens, std::string name) : t_(std::move(tokens)), name_(std::move(name)) {}

  JinjaBody run() {
    std::string end;
    return statements({}, end);
  }

 private:
  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > kMaxJinjaDepth) p.fail("the template nests deeper than " + std::to_string(kMaxJinjaDepth) + " levels");
    }
    ~DepthGuard() { --p.depth_; }
  };

  [[noreturn]] void fail(const std::string& what) const { throw TemplateError(name_, cur().line, what); }
  const JinjaToken& cur() const { return t_[i_]; }
  const JinjaToken& peek(size_t ahead = 1) const { return t_[std::min(i_ + ahead, t_.size() - 1)]; }
  bool is_op(const char* op) const { return cur().kind == K::Operator && cur().text == op; }
  bool is_name(const char* n) const { return cur().kind == K::Name && cur().text == n; }
  bool take_op(const char* op) {
    if (!is_op(op)) return false;
    ++i_;
    return true;
  }
  bool take_name(const char* n) {
    if (!is_name(n)) return false;
    ++i_;
    return true;
  }
  static std::string describe(const JinjaToken& t) {
    switch (t.kind) {
      case K::End: return "the end of the template";
      case K::StmtEnd: return "the end of the statement";
      case K::ExprEnd: return "the end of the expression";
      case K::String: return "a string";
      case K::Text: return "text";
      default: return "'" + t.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!take_op(op)) fail(std::string("expected '") + op + "', found " + describe(cur()));
  }
  std::string expect_identifier(const char* what) {
    if (cur().kind != K::Name) fail(std::string("expected ") + what + ", found " + describe(cur()));
    return t_[i_++].text;
  }
  void expect_stmt_end() {
    if (cur().kind != K::StmtEnd) fail("expected the end of the statement, found " + describe(cur()));
    ++i_;
  }

  // Statements up to one of `ends` ({% endif %} ...); `end` receives which one (its tag consumed up
  // to the name: the caller reads the rest of that tag).
  JinjaBody statements(const std::vector<std::string>& ends, std::string& end) {
    DepthGuard guard(*this);
    JinjaBody body;
    for (;;) {
      const JinjaToken& t = cur();
      if (t.kind == K::End) {
        if (!ends.empty()) fail("the template ends inside a block: expected {% " + ends.back() + " %}");
        end.clear();
        return body;
      }
      if (t.kind == K::Text) {
        JinjaNode n{JinjaNodeKind::Text, t.line, t.text, {}, {}, {}, {}, {}, {}};
        body.push_back(std::move(n));
        ++i_;
        continue;
      }
      if (t.kind == K::ExprBegin) {
        ++i_;
        JinjaNode n{JinjaNodeKind::Output, t.line, "", {}, {}, {}, {}, {}, {}};
        n.expr = tuple_or_expression();
        if (cur().kind != K::ExprEnd) fail("expected the end of the expression \"}}\", found " + describe(cur()));
        ++i_;
        body.push_back(std::move(n));
        continue;
      }
      if (t.kind != K::StmtBegin) fail("unexpected " + describe(t));
      ++i_;
      if (cur().kind != K::Name) fail("expected a statement name, found " + describe(cur()));
      const std::string keyword = cur().text;
      for (const std::string& e : ends)
        if (keyword == e) {
          ++i_;
          end = keyword;
          return body;
        }
      ++i_;
      body.push_back(statement(keyword, t.line));
    }
  }

  JinjaNode statement(const std::string& keyword, int line) {
    JinjaNode n{JinjaNodeKind::Text, line, "", {}, {}, {}, {}, {}, {}};
    std::string end;
    if (keyword == "if") {
      n.kind = JinjaNodeKind::If;
      n.conditions.push_back(expression());
      for (;;) {
        expect_stmt_end();
        n.bodies.push_back(statements({"elif", "else", "endif"}, end));
        if (end == "elif") {
          n.conditions.push_back(expression());
          continue;
        }
        if (end == "else") {
          expect_stmt_end();
          n.bodies.push_back(statements({"endif"}, end));
        }
        expect_stmt_end();
        return n;
      }
    }
    if (keyword == "for") {
      n.kind = JinjaNodeKind::For;
      n.targets = target_names();
      if (!take_name("in")) fail("expected 'in' in the for statement, found " + describe(cur()));
      n.expr = tuple_or_expression(/*conditional=*/false);
      if (take_name("if")) n.condition = expression(false);
      if (is_name("recursive")) fail("recursive for loops are not supported");
      expect_stmt_end();
      n.bodies.push_back(statements({"else", "endfor"}, end));
      if (end == "else") {
        expect_stmt_end();
        n.bodies.push_back(statements({"endfor"}, end));
      }
      expect_stmt_end();
      return n;
    }
    if (keyword == "set") {
      n.kind = JinjaNodeKind::Set;
      if (cur().kind == K::Name && peek().kind == K::Operator && peek().text == ".") {
        n.targets.push_back(t_[i_].text);
        i_ += 2;
        n.attribute = expect_identifier("an attribute name");
      } else {
        n.targets = target_names();
      }
      if (take_op("=")) {
        n.expr = tuple_or_expression();
        expect_stmt_end();
        return n;
      }
      if (n.targets.size() != 1 || !n.attribute.empty()) fail("a block set assigns one name");
      if (is_op("|")) fail("filters on a block set are not supported");
      expect_stmt_end();
      n.bodies.push_back(statements({"endset"}, end));
      expect_stmt_end();
      return n;
    }
    if (keyword == "break" || keyword == "continue") {
      n.kind = keyword == "break" ? JinjaNodeKind::Break : JinjaNodeKind::Continue;
      expect_stmt_end();
      return n;
    }
    if (keyword == "generation") {
      n.kind = JinjaNodeKind::Block;
      expect_stmt_end();
      n.bodies.push_back(statements({"endgeneration"}, end));
      expect_stmt_end();
      return n;
    }
    if (keyword.rfind("end", 0) == 0 || keyword == "elif" || keyword == "else")
      fail("{% " + keyword + " %} without the statement it closes");
    fail("the statement {% " + keyword + " %} is not supported (supported: if, for, set, break, continue, generation)");
  }

  std::vector<std::string> target_names() {
    std::vector<std::string> names;
    const bool paren = take_op("(");
    do names.push_back(expect_identifier("a variable name"));
    while (take_op(","));
    if (paren) expect_op(")");
    for (const std::string& n : names)
      if (n == "loop" || n == "true" || n == "false" || n == "none") fail("cannot assign to '" + n + "'");
    return names;
  }

  // `a, b` outside brackets is a tuple ({{ a, b }}, for ... in a, b, set x = a, b).
  JinjaExprPtr tuple_or_expression(bool conditional = true) {
    const int line = cur().line;
    JinjaExprPtr first = expression(conditional);
    if (!is_op(",")) return first;
    auto list = make(JinjaExprKind::List, line);
    list->args.push_back(std::move(first));
    while (take_op(",")) {
      if (cur().kind == K::StmtEnd || cur().kind == K::ExprEnd) break;
      list->args.push_back(expression(conditional));
    }
    return list;
  }

  JinjaExprPtr expression(bool conditional = true) {
    DepthGuard guard(*this);
    JinjaExprPtr e = or_expr();
    while (conditional && is_name("if")) {
      auto c = make(JinjaExprKind::Conditional, cur().line);
      ++i_;
      JinjaExprPtr test = or_expr();
      JinjaExprPtr otherwise = take_name("else") ? expression() : nullptr;
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(test));
      c->args.push_back(std::move(otherwise));
      e = std::move(c);
    }
    return e;
  }
  JinjaExprPtr binary_chain(JinjaExprKind kind, const char* word, JinjaExprPtr (Parser::*next)()) {
    JinjaExprPtr left = (this->*next)();
    while (is_name(word)) {
      auto b = make(kind, cur().line);
      ++i_;
      b->args.push_back(std::move(left));
      b->args.push_back((this->*next)());
      left = std::move(b);
    }
    return left;
  }
  JinjaExprPtr or_expr() { return binary_chain(JinjaExprKind::Or, "or", &Parser::and_expr); }
  JinjaExprPtr and_expr() { return binary_chain(JinjaExprKind::And, "and", &Parser::not_expr); }
  JinjaExprPtr not_expr() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      auto n = make(JinjaExprKind::Not, cur().line);
      ++i_;
      n->args.push_back(not_expr());
      return n;
    }
    return compare();
  }
  JinjaExprPtr compare() {
    const int line = cur().line;
    JinjaExprPtr first = math1();
    std::unique_ptr<JinjaExpr> c;
    for (;;) {
      std::string op;
      if (cur().kind == K::Operator && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                        cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        op = cur().text;
        ++i_;
      } else if (is_name("in")) {
        op = "in";
        ++i_;
      } else if (is_name("not") && peek().kind == K::Name && peek().text == "in") {
        op = "not in";
        i_ += 2;
      } else {
        break;
      }
      if (!c) {
        c = make(JinjaExprKind::Compare, line);
        c->args.push_back(std::move(first));
      }
      c->ops.push_back(op);
      c->args.push_back(math1());
    }
    return c ? std::move(c) : std::move(first);
  }
  JinjaExprPtr binary_ops(std::initializer_list<const char*> ops, JinjaExprPtr (Parser::*next)()) {
    JinjaExprPtr left = (this->*next)();
    for (;;) {
      const char* found = nullptr;
      for (const char* op : ops)
        if (is_op(op)) found = op;
      if (!found) return left;
      auto b = make(JinjaExprKind::Binary, cur().line);
      b->name = found;
      ++i_;
      b->args.push_back(std::move(left));
      b->args.push_back((this->*next)());
      left = std::move(b);
    }
  }
  JinjaExprPtr math1() { return binary_ops({"+", "-"}, &Parser::concat); }
  JinjaExprPtr concat() { return binary_ops({"~"}, &Parser::math2); }
  JinjaExprPtr math2() { return binary_ops({"*", "/", "//", "%"}, &Parser::power); }
  JinjaExprPtr power() { return binary_ops({"**"}, &Parser::unary_filtered); }
  JinjaExprPtr unary_filtered() { return unary(true); }
  JinjaExprPtr unary(bool with_filter) {
    DepthGuard guard(*this);
    JinjaExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = make(is_op("-") ? JinjaExprKind::Negate : JinjaExprKind::Plus, cur().line);
      ++i_;
      e->args.push_back(unary(false));
    } else {
      e = primary();
    }
    e = postfix(std::move(e));
    if (with_filter) e = filters(std::move(e));
    return e;
  }

  JinjaExprPtr primary() {
    const JinjaToken& t = cur();
    auto e = make(JinjaExprKind::Literal, t.line);
    switch (t.kind) {
      case K::Name:
        ++i_;
        if (t.text == "true" || t.text == "True") e->value = true;
        else if (t.text == "false" || t.text == "False") e->value = false;
        else if (t.text == "none" || t.text == "None") e->value = nullptr;
        else {
          e->kind = JinjaExprKind::Name;
          e->name = t.text;
        }
        return e;
      case K::String: {
        std::string s;
        while (cur().kind == K::String) s += t_[i_++].text;  // adjacent literals join, as in Python
        e->value = s;
        return e;
      }
      case K::Integer: {
        ++i_;
        errno = 0;
        const long long v = std::strtoll(t.text.c_str(), nullptr, 10);
        if (errno == ERANGE) fail("the integer " + t.text + " is too large");
        e->value = static_cast<int64_t>(v);
        return e;
      }
      case K::Float:
        ++i_;
        e->value = std::strtod(t.text.c_str(), nullptr);
        return e;
      case K::Operator:
        if (take_op("(")) {
          if (take_op(")")) {
            e->kind = JinjaExprKind::List;
            return e;
          }
          JinjaExprPtr inner = expression();
          if (is_op(",")) {
            auto list = make(JinjaExprKind::List, t.line);
            list->args.push_back(std::move(inner));
            while (take_op(",") && !is_op(")")) list->args.push_back(expression());
            inner = std::move(list);
          }
          expect_op(")");
          return inner;
        }
        if (take_op("[")) {
          e->kind = JinjaExprKind::List;
          while (!is_op("]")) {
            e->args.push_back(expression());
            if (!take_op(",")) break;
          }
          expect_op("]");
          return e;
        }
        if (take_op("{")) {
          e->kind = JinjaExprKind::Dict;
          while (!is_op("}")) {
            e->args.push_back(expression());
            expect_op(":");
            e->args.push_back(expression());
            if (!take_op(",")) break;
          }
          expect_op("}");
          return e;
        }
        break;
      default: break;
    }
    fail("unexpected " + describe(t) + " in an expression");
  }

  JinjaExprPtr postfix(JinjaExprPtr e) {
    for (;;) {
      DepthGuard guard(*this);
      const int line = cur().line;
      if (take_op(".")) {
        if (cur().kind == K::Integer) {
          auto item = make(JinjaExprKind::GetItem, line);
          auto index = make(JinjaExprKind::Literal, line);
          index->value = static_cast<int64_t>(std::strtoll(t_[i_++].text.c_str(), nullptr, 10));
          item->args.push_back(std::move(e));
          item->args.push_back(std::move(index));
          e = std::move(item);
          continue;
        }
        auto a = make(JinjaExprKind::GetAttr, line);
        a->name = expect_identifier("an attribute name");
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (take_op("[")) {
        e = subscript(std::move(e), line);
      } else if (is_op("(")) {
        e = call(std::move(e));
      } else {
        return e;
      }
    }
  }

  JinjaExprPtr subscript(JinjaExprPtr object, int line) {
    JinjaExprPtr parts[3];
    int part = 0;
    bool slice = false;
    for (;;) {
      if (is_op(":")) {
        ++i_;
        slice = true;
        if (++part > 2) fail("a slice has at most three parts");
        continue;
      }
      if (is_op("]")) break;
      if (parts[part]) fail("expected ']' or ':' in a subscript, found " + describe(cur()));
      parts[part] = expression();
      if (is_op(",")) fail("subscripts with several indices are not supported");
    }
    expect_op("]");
    auto e = make(slice ? JinjaExprKind::Slice : JinjaExprKind::GetItem, line);
    e->args.push_back(std::move(object));
    if (!slice) {
      if (!parts[0]) fail("an empty subscript");
      e->args.push_back(std::move(parts[0]));
    } else {
      for (auto& p : parts) e->args.push_back(std::move(p));
    }
    return e;
  }

  // (args, name=value, ...) into `e` (its args[0] is already the callee or the operand).
  void call_arguments(JinjaExpr& e) {
    expect_op("(");
    while (!is_op(")")) {
      if (is_op("*") || is_op("**")) fail("*args and **kwargs in calls are not supported");
      if (cur().kind == K::Name && peek().kind == K::Operator && peek().text == "=") {
        std::string key = t_[i_].text;
        i_ += 2;
        e.kwargs.emplace_back(std::move(key), expression());
      } else {
        if (!e.kwargs.empty()) fail("a positional argument after a keyword argument");
        e.args.push_back(expression());
      }
      if (!take_op(",")) break;
    }
    expect_op(")");
  }

  JinjaExprPtr call(JinjaExprPtr callee) {
    auto c = make(JinjaExprKind::Call, cur().line);
    if (callee->kind == JinjaExprKind::Name) {
      if (!jinja_known(kJinjaFunctions, callee->name))
        fail("the function " + callee->name + "() is not supported (supported: namespace, raise_exception, range, strftime_now, dict)");
    } else if (callee->kind == JinjaExprKind::GetAttr) {
      if (!jinja_known(kJinjaMethods, callee->name)) fail("the method ." + callee->name + "() is not supported");
    } else {
      fail("only functions and methods can be called");
    }
    c->args.push_back(std::move(callee));
    call_arguments(*c);
    return c;
  }

  JinjaExprPtr filters(JinjaExprPtr e) {
    for (;;) {
      DepthGuard guard(*this);
      if (take_op("|")) {
        auto f = make(JinjaExprKind::Filter, cur().line);
        f->name = expect_identifier("a filter name");
        if (!jinja_known(kJinjaFilters, f->name)) fail("the filter '" + f->name + "' is not supported");
        f->args.push_back(std::move(e));
        if (is_op("(")) call_arguments(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        auto t = make(JinjaExprKind::Test, cur().line);
        ++i_;
        t->negated = take_name("not");
        if (cur().kind == K::Name) t->name = t_[i_++].text;
        else if (cur().kind == K::Operator) t->name = t_[i_++].text;
        else fail("expected a test name after 'is', found " + describe(cur()));
        if (!jinja_known(kJinjaTests, t->name)) fail("the test '" + t->name + "' is not supported");
        t->args.push_back(std::move(e));
        const bool argument_follows = cur().kind == K::String || cur().kind == K::Integer || cur().kind == K::Float ||
                                      (cur().kind == K::Name && !is_name("else") && !is_name("or") && !is_name("and")) ||
                                      is_op("[") || is_op("{");
        if (is_op("(")) {
          call_arguments(*t);
        } else if (is_name("is")) {
          fail("You cannot chain multiple tests with is");
        } else if (argument_follows) {
          t->args.push_back(postfix(primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = call(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<JinjaToken> t_;
  std::string name_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

JinjaBody parse_jinja(const std::string& source_text, const std::string& source_name) {
  return Parser(lex_jinja(source_text, source_name), source_name).run();
}

}  // namespace fp4kit::serve
