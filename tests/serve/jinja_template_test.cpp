// fp4kit's Jinja engine on hand-written templates: every supported construct, whitespace control
// and Python's value semantics give what Jinja2 3.1 renders in transformers' environment (the
// expected texts were rendered by Jinja2 from these templates and this context); templates outside
// the subset are refused when read, with the line and the construct; errors while rendering name
// the line; raise_exception is told apart; output, steps, ranges and nesting are bounded.
#include <gtest/gtest.h>

#include "serve/jinja_error.h"
#include "serve/jinja_template.h"

namespace fp4kit::serve {
namespace {

const JinjaData kContext = JinjaData::parse(R"({"xs": [3, 1, 2], "d": {"b": 1, "a": [1, "x"]}, "s": "h\u00e9llo w\u00f6rld", "n": null,
  "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user"}]})");

std::string render(const std::string& text, const JinjaData& context = kContext, const JinjaLimits& limits = {}) {
  return JinjaTemplate::parse(text, "t.jinja").render(context, limits);
}

// The TemplateError's text ("" when none was thrown); `raised`: whether it came from raise_exception.
std::string error_of(const std::string& text, bool* raised = nullptr, const JinjaLimits& limits = {}) {
  try {
    render(text, kContext, limits);
  } catch (const TemplateRaised& e) {
    if (raised) *raised = true;
    return e.what();
  } catch (const TemplateError& e) {
    if (raised) *raised = false;
    return e.what();
  }
  return "";
}

struct Case {
  const char* name;
  const char* text;
  const char* expected;
};

template <size_t N>
void expect_renders(const Case (&cases)[N]) {
  for (const Case& c : cases) {
    try {
      EXPECT_EQ(render(c.text), c.expected) << c.name;
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.name << ": " << e.what();
    }
  }
}

TEST(JinjaTemplate, RendersEachConstructAsJinja2Does) {
  const Case cases[] = {
    {"if_elif_else", R"J({% for x in xs %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}other{% endif %},{% endfor %})J", R"J(other,one,two,)J"},
    {"loop_variables", R"J({% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}[{{ loop.previtem }}|{{ loop.nextitem }}] {% endfor %})J", R"J(1032TrueFalse3[|1] 2121FalseFalse3[3|2] 3210FalseTrue3[1|] )J"},
    {"for_else_filter_unpack", R"J({% for x in [] %}no{% else %}empty{% endfor %}|{% for x in xs if x > 1 %}{{ x }}{{ loop.length }}{% endfor %}|{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %})J", R"J(empty|3222|b=1;a=[1, 'x'];)J"},
    {"break_continue", R"J({% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %})J", R"J(0134)J"},
    {"set_scopes_and_namespace", R"J({% set a = 1 %}{% set ns = namespace(total=0, seen='') %}{% for x in xs %}{% set a = x %}{% set ns.total = ns.total + x %}{% set ns.seen = ns.seen ~ x %}{% endfor %}{{ a }} {{ ns.total }} {{ ns.seen }}{% if true %}{% set b = 5 %}{% endif %} {{ b }})J", R"J(1 6 312 5)J"},
    {"set_block_and_tuple", R"J({% set greeting %}Hi {{ 'there'|upper }}!{% endset %}{{ greeting }}|{% set p, q = 1, 'two' %}{{ q }}{{ p }})J", R"J(Hi THERE!|two1)J"},
    {"trim_and_lstrip_blocks", R"J(a
  {% if true %}
  b
  {% endif %}
  c {% if true %}d{% endif %}
{# note #}
  {# indented note #}
e
)J", R"J(a
  b
  c de)J"},
    {"minus_strips", R"J(a  
  {%- if true -%}  
 b 
 {%- endif %}
{{- ' c ' -}}
  d {{ 'e' }}  
)J", R"J(ab c d e  )J"},
    {"plus_keeps", R"J(a
  {%+ if true +%}
b
{% endif %}
)J", R"J(a
  
b
)J"},
    {"crlf_and_trailing_newline", "x\r\n{% if true %}\r\ny\r\n{% endif %}\r\nz\r\n", "x\ny\nz"},
    {"arithmetic", R"J({{ 7 // 2 }} {{ -7 // 2 }} {{ 7 / 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 'ab' * 2 }} {{ 1 + 2.5 }} {{ 0.1 + 0.2 }} {{ 10 - 3 * 2 }} {{ (10 - 3) * 2 }} {{ -xs[0] }})J", R"J(3 -4 3.5 2 1024 abab 3.5 0.30000000000000004 4 14 -3)J"},
    {"concat_and_str", R"J({{ 'a' ~ n ~ 1 ~ true ~ xs ~ d }}|{{ n }}|{{ xs }}|{{ d }}|{{ 1.0 }}|{{ 1e20 }}|{{ "it's" ~ ["it's", 'say "x"'] }})J", R"J(aNone1True[3, 1, 2]{'b': 1, 'a': [1, 'x']}|None|[3, 1, 2]|{'b': 1, 'a': [1, 'x']}|1.0|1e+20|it's["it's", 'say "x"'])J"},
    {"logic_returns_operands", R"J({{ n or 'default' }}|{{ 'x' and 'y' }}|{{ 0 or '' or 'last' }}|{{ not n }}|{{ 'yes' if xs else 'no' }}|{{ 'yes' if n }}|)J", R"J(default|y|last|True|yes||)J"},
    {"comparisons_and_in", R"J({{ 1 < 2 < 3 }}{{ 1 < 3 < 2 }}{{ 'a' < 'b' }}{{ [1, 2] == [1, 2] }}{{ 1 == 1.0 }}{{ 'ell' in s }}{{ 2 in xs }}{{ 'a' in d }}{{ 'z' not in d }}{{ d == {'a': [1, 'x'], 'b': 1} }})J", R"J(TrueFalseTrueTrueTrueFalseTrueTrueTrueTrue)J"},
    {"subscripts_and_slices", R"J({{ xs[0] }}{{ xs[-1] }}{{ xs[1:] }}{{ xs[::-1] }}{{ s[1] }}{{ s[-5:] }}{{ s[:2] }}{{ s|length }}{{ d['a'][1] }}{{ d.a[0] }}{{ msgs[2].content is defined }}{{ xs[9] is defined }})J", R"J(32[1, 2][2, 1, 3]éwörldhé11x1FalseFalse)J"},
    {"adjacent_strings_and_escapes", R"J({{ 'a' 'b' "c" }}|{{ 'tab\there\nline \u00e9 \x41 \\ \' end' }})J", R"J(abc|tab	here
line é A \ ' end)J"},
    {"dict_and_list_literals", R"J({{ {'k': [1, 2, {'n': none}], 'b': true}|tojson }}|{{ [1, 'two', (3, 4)]|length }})J", R"J({"k": [1, 2, {"n": null}], "b": true}|3)J"},
    {"tests", R"J({{ n is none }}{{ n is not none }}{{ s is string }}{{ 1 is number }}{{ 1.5 is float }}{{ 1 is integer }}{{ d is mapping }}{{ xs is sequence }}{{ xs is iterable }}{{ missing is defined }}{{ missing is undefined }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 'x' is equalto 'x' }}{{ true is boolean }}{{ false is false }}{{ 'abc' is lower }}{{ 2 is in xs }}{{ n is sameas none }})J", R"J(TrueFalseTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue)J"},
    {"tojson_variants", R"J({{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ d|tojson(sort_keys=true) }}|{{ d|tojson(separators=(',', ':')) }}|{{ 'é"\n'|tojson }}|{{ 'é😀'|tojson(ensure_ascii=true) }}|{{ [1.5, 1e-7, 3.0]|tojson }}|{{ {}|tojson(indent=2) }})J", R"J({"b": 1, "a": [1, "x"]}|{
  "b": 1,
  "a": [
    1,
    "x"
  ]
}|{"a": [1, "x"], "b": 1}|{"b":1,"a":[1,"x"]}|"é\"\n"|"\u00e9\ud83d\ude00"|[1.5, 1e-07, 3.0]|{})J"},
    {"string_filters", R"J({{ '  pad  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'Hello World'|lower }}|{{ 'mixed Case'|upper }}|{{ 'hello WORLD'|capitalize }}|{{ 'hello big-world'|title }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 42|string }}|{{ n|string }})J", R"J(pad|hi|hello world|MIXED CASE|Hello world|Hello Big-World|bba|42|None)J"},
    {"sequence_filters", R"J({{ xs|join(', ') }}|{{ xs|first }}{{ xs|last }}|{{ xs|length }}{{ d|count }}|{{ s|list|length }}|{{ d|items|list|length }}{% for p in d|items %}{{ p[0] }}{% endfor %}|{{ xs|reverse|list }}|{{ xs|sort }}|{{ xs|sort(reverse=true) }}|{{ ['b', 'A', 'a']|unique|list }}|{{ 'abc'|reverse }})J", R"J(3, 1, 2|32|32|11|2ba|[2, 1, 3]|[1, 2, 3]|[3, 2, 1]|['b', 'A']|cba)J"},
    {"map_select_default", R"J({{ msgs|map(attribute='role')|join(',') }}|{{ msgs|selectattr('role', 'equalto', 'user')|list|length }}|{{ msgs|rejectattr('content', 'defined')|list|length }}|{{ [' a ', 'b ']|map('trim')|join }}|{{ xs|select('odd')|list }}|{{ xs|reject('odd')|list }}|{{ missing|default('dflt') }}|{{ ''|default('empty', true) }}|{{ msgs|join(' ', attribute='role') }})J", R"J(user,assistant,user|2|1|ab|[3, 1]|[2]|dflt|empty|user assistant user)J"},
    {"numbers", R"J({{ '42'|int + 1 }}|{{ '4.5'|float }}|{{ 'x'|int(7) }}|{{ -3|abs }}|{{ (-3)|abs }}|{{ 3.7|int }})J", R"J(43|4.5|7|3|3|3)J"},
    {"string_methods", R"J({{ 'a,b,,c'.split(',') }}{{ ' a  b '.split() }}{{ 'a,b,c'.split(',', 1) }}{{ 'a,b,c'.rsplit(',', 1) }}{{ '<x>y</x>'.split('</x>')[-1] }}{{ 'xxhixx'.strip('x') }}{{ '  l'.lstrip() }}{{ 'r  '.rstrip() }}|{{ s.startswith('hé') }}{{ s.endswith(('x', 'ld')) }}{{ s.replace('l', 'L') }}{{ s.find('w') }}{{ s.count('l') }}{{ '-'.join(['a', 'b']) }}{{ 'ab'.upper() }}{{ 'AB'.lower() }}{{ 'ab cd'.title() }})J", R"J(['a', 'b', '', 'c']['a', 'b']['a', 'b,c']['a,b', 'c']hilr|TrueTruehéLLo wörLd63a-bABabAb Cd)J"},
    {"dict_methods", R"J({{ d.keys()|list }}{{ d.values()|list }}{{ d.get('b') }}{{ d.get('z') }}{{ d.get('z', 'dz') }}{% for k, v in d.items() %}{{ k }}{% endfor %})J", R"J(['b', 'a'][1, [1, 'x']]1Nonedzba)J"},
  };
  expect_renders(cases);
}

// Where Jinja2 differs from the obvious: Python's str.title() and Jinja2's title filter split words
// differently; the generator filters (select, map, ...) are true even when empty; safe makes a
// string; a subscript that fails is undefined.
TEST(JinjaTemplate, FollowsJinja2WhereItDiffersFromTheObvious) {
  const Case cases[] = {
    {"titles", R"J({{ s.title() }}|{{ "['a', it's x-y]"|title }}|{{ 'hello WORLD'.title() }})J", R"J(Héllo Wörld|['a', It's X-Y]|Hello World)J"},
    {"generators_are_true", R"J({% if msgs|selectattr('role', 'equalto', 'system') %}always{% endif %}|{{ msgs|selectattr('role', 'equalto', 'system')|list|length }}|{% if xs|reject('number') %}also{% endif %})J", R"J(always|0|also)J"},
    {"safe_is_a_string", R"J({{ -1 * (1, 2)|first|safe }}|{{ (1|safe) ~ 2 }})J", R"J(|12)J"},
    {"list_count_and_failed_subscripts", R"J({{ [1, 2, 1].count(1) }}|{{ d['b'][0] is defined }}|{{ n[0] is defined }}|{{ xs[1:][0] }})J", R"J(2|False|False|1)J"},
  };
  expect_renders(cases);
  EXPECT_EQ(error_of("{{ d['b'][1:] }}"), "t.jinja:1: 'int' object is not subscriptable");
  EXPECT_EQ(render("{{ -0.0 }} {{ -(1.5) }} {{ -xs[0] }}"), "-0.0 -1.5 -3");
}

TEST(JinjaTemplate, GenerationBlocksRenderTheirBody) {
  // transformers' {% generation %} marks the assistant's text for its masks; the text is unchanged.
  EXPECT_EQ(render("a{% generation %}b{{ 1 }}{% endgeneration %}c"), "ab1c");
}

TEST(JinjaTemplate, RaiseExceptionIsToldApartAndNamesItsLine) {
  bool raised = false;
  const std::string why = error_of("ok\n{% if xs|length > 2 %}{{ raise_exception('too many: ' ~ xs|length) }}{% endif %}", &raised);
  EXPECT_TRUE(raised);
  EXPECT_EQ(why, "t.jinja:2: too many: 3");
  try {
    render("{{ raise_exception('no') }}");
  } catch (const TemplateRaised& e) {
    EXPECT_EQ(e.message(), "no");
    EXPECT_EQ(e.line(), 1);
  }
}

TEST(JinjaTemplate, RenderErrorsNameTheLine) {
  bool raised = true;
  EXPECT_EQ(error_of("a\n\n{{ missing.attr }}", &raised), "t.jinja:3: 'missing' is undefined");
  EXPECT_FALSE(raised);
  EXPECT_EQ(error_of("{{ 'a' + 1 }}"), "t.jinja:1: unsupported operand type(s) for +: 'str' and 'int'");
  EXPECT_EQ(error_of("\n{{ missing + 'x' }}"), "t.jinja:2: 'missing' is undefined");
  EXPECT_EQ(error_of("{{ '</think>' in n }}"), "t.jinja:1: argument of type 'NoneType' is not iterable");
  EXPECT_EQ(error_of("{{ 1 // 0 }}"), "t.jinja:1: integer division or modulo by zero");
  EXPECT_EQ(error_of("{% set x = 1 %}{% set x.y = 2 %}"),
            "t.jinja:1: cannot assign the attribute 'y' of 'x': only a namespace() takes attributes");
  EXPECT_EQ(error_of("{% for a, b in xs %}{% endfor %}"), "t.jinja:1: 'int' object is not iterable");
  EXPECT_EQ(error_of("{{ 'a'.nosuch() }}"), "t.jinja:1: the method .nosuch() is not supported");
  EXPECT_EQ(error_of("{{ 1 < 'a' }}"), "t.jinja:1: '<' not supported between instances of 'int' and 'str'");
}

TEST(JinjaTemplate, ConstructsOutsideTheSubsetAreRefusedWhenRead) {
  const auto refusal = [](const std::string& text) {
    try {
      JinjaTemplate::parse(text, "m.jinja");
    } catch (const TemplateError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(refusal("a\n{% macro f() %}x{% endmacro %}"),
            "m.jinja:2: the statement {% macro %} is not supported (supported: if, for, set, break, continue, generation)");
  EXPECT_EQ(refusal("{% include 'x' %}"),
            "m.jinja:1: the statement {% include %} is not supported (supported: if, for, set, break, continue, generation)");
  EXPECT_EQ(refusal("\n\n{{ x | wordwrap }}"), "m.jinja:3: the filter 'wordwrap' is not supported");
  EXPECT_EQ(refusal("{% if x is callable %}{% endif %}"), "m.jinja:1: the test 'callable' is not supported");
  EXPECT_EQ(refusal("{{ cycler(1, 2) }}"),
            "m.jinja:1: the function cycler() is not supported (supported: namespace, raise_exception, range, strftime_now, dict)");
  EXPECT_EQ(refusal("{{ messages.append(1) }}"), "m.jinja:1: the method .append() is not supported");
  EXPECT_EQ(refusal("{% for x in xs recursive %}{% endfor %}"), "m.jinja:1: recursive for loops are not supported");
  EXPECT_EQ(refusal("{% raw %}{{ x }}{% endraw %}"), "m.jinja:1: \"{% raw %}\" is not supported");
  EXPECT_EQ(refusal("{{ f(*args) }}"),
            "m.jinja:1: the function f() is not supported (supported: namespace, raise_exception, range, strftime_now, dict)");
  // Syntax errors.
  EXPECT_EQ(refusal("ok\n{% if x %}never closed"), "m.jinja:2: the template ends inside a block: expected {% endif %}");
  EXPECT_EQ(refusal("{% endfor %}"), "m.jinja:1: {% endfor %} without the statement it closes");
  EXPECT_EQ(refusal("{{ x "), "m.jinja:1: a tag \"{{\" is never closed");
  EXPECT_EQ(refusal("\n{{ 'abc }}"), "m.jinja:2: a string is never closed");
  EXPECT_EQ(refusal("{# open"), "m.jinja:1: a comment \"{#\" is never closed");
  EXPECT_EQ(refusal("{{ (1 }}"), "m.jinja:1: unexpected '}', expected ')'");
  EXPECT_EQ(refusal("{{ 1 ] }}"), "m.jinja:1: unexpected ']'");
  EXPECT_EQ(refusal("{{ x is defined is none }}"), "m.jinja:1: You cannot chain multiple tests with is");
  EXPECT_EQ(refusal("{{ (x is none if y else z) }}"), "m.jinja:1: expected ')', found 'y'");
  EXPECT_EQ(refusal("{{ x @ y }}"), "m.jinja:1: unexpected character '@' in a tag");
  EXPECT_EQ(refusal("{{ }}"), "m.jinja:1: unexpected the end of the expression in an expression");
  EXPECT_EQ(refusal("ok \xff"), "m.jinja:1: the template is not valid UTF-8");
  // Nesting deeper than the parser's bound is refused, not a stack overflow.
  EXPECT_NE(refusal("{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}").find("nests deeper than"), std::string::npos);
  EXPECT_NE(refusal("{{ " + std::string(50000, '-') + "1 }}").find("nests deeper than"), std::string::npos);
  std::string ifs;
  for (int i = 0; i < 300; ++i) ifs += "{% if true %}";
  EXPECT_NE(refusal(ifs).find("nests deeper than"), std::string::npos);
}

TEST(JinjaTemplate, RenderingIsBounded) {
  JinjaLimits small;
  small.max_output_bytes = 1000;
  small.max_steps = 100000;
  EXPECT_EQ(render("{% for i in range(10) %}{{ 'abcdefghij' * 10 }}{% endfor %}", kContext, small).size(), 1000u);
  EXPECT_EQ(error_of("{% for i in range(11) %}{{ 'abcdefghij' * 10 }}{% endfor %}", nullptr, small),
            "t.jinja:1: the template wrote more than 1000 bytes (the render limit)");
  // A string or list built without being written is bounded too.
  EXPECT_EQ(error_of("{% set ns = namespace(s='x') %}{% for i in range(20) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", nullptr, small),
            "t.jinja:1: a string beyond the output limit");
  EXPECT_EQ(error_of("{{ 'x' * 100000000000 }}", nullptr, small), "t.jinja:1: a repetition beyond the output limit");
  EXPECT_EQ(error_of("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", nullptr, small),
            "t.jinja:1: the template took more than 100000 steps (the render limit)");
  EXPECT_EQ(error_of("{{ range(100001)|length }}"), "t.jinja:1: range() of more than 100000 items (the sandbox limit)");
  EXPECT_EQ(render("{{ range(100000)|length }}"), "100000");
  // Values nested by a loop stay shallow enough to print and compare.
  EXPECT_EQ(error_of("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}"),
            "t.jinja:1: a list or dict nested deeper than 256 levels");
}

}  // namespace
}  // namespace fp4kit::serve
