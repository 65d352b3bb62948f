#pragma once
// The parsed form of a chat template (jinja_parser.h builds it, jinja_render.h walks it). One node
// type for expressions and one for statements, each a kind with the few fields that kind uses.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace fp4kit::serve {

struct JinjaExpr;
using JinjaExprPtr = std::unique_ptr<JinjaExpr>;

enum class JinjaExprKind {
  Literal,      // value
  Name,         // name
  List,         // args: the items (tuples are lists)
  Dict,         // args: key, value, key, value, ...
  GetAttr,      // args[0].name
  GetItem,      // args[0][args[1]]
  Slice,        // args[0][args[1]:args[2]:args[3]], a null pointer for a part left out
  Call,         // args[0](args[1..], kwargs): a global function (Name) or a method (GetAttr)
  Filter,       // args[0] | name(args[1..], kwargs)
  Test,         // args[0] is [not] name(args[1..])
  Not,          // not args[0]
  Negate,       // -args[0]
  Plus,         // +args[0]
  Binary,       // args[0] op args[1]: + - * / // % ** ~
  Compare,      // args[0] ops[0] args[1] ops[1] args[2] ...: == != < <= > >= in "not in"
  And,          // args[0] and args[1]
  Or,           // args[0] or args[1]
  Conditional,  // args[0] if args[1] else args[2] (null: undefined)
};

struct JinjaExpr {
  JinjaExprKind kind;
  int line = 1;
  nlohmann::ordered_json value;    // Literal
  std::string name;                // Name, GetAttr, Filter, Test, Binary (the operator)
  bool negated = false;            // Test: "is not"
  std::vector<std::string> ops;    // Compare
  std::vector<JinjaExprPtr> args;
  std::vector<std::pair<std::string, JinjaExprPtr>> kwargs;  // Call, Filter
};

struct JinjaNode;
using JinjaBody = std::vector<JinjaNode>;

enum class JinjaNodeKind {
  Text,      // text
  Output,    // {{ expr }}
  If,        // conditions[i] -> bodies[i]; bodies.back() is the else branch when it has one more
  For,       // for targets in expr [if condition]: bodies[0], else: bodies[1]
  Set,       // targets = expr; or target.attribute = expr (a namespace); or a block: bodies[0]
  Break,
  Continue,
  Block,     // bodies[0] rendered as it is ({% generation %}, transformers' marker)
};

struct JinjaNode {
  JinjaNodeKind kind;
  int line = 1;
  std::string text;                  // Text
  JinjaExprPtr expr;                 // Output, For (the iterable), Set (the value, null for a block)
  JinjaExprPtr condition;            // For: the "if" filter
  std::vector<JinjaExprPtr> conditions;
  std::vector<std::string> targets;  // For, Set: names (several: tuple unpacking)
  std::string attribute;             // Set: targets[0].attribute
  std::vector<JinjaBody> bodies;
};

}  // namespace fp4kit::serve
