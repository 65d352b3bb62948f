#!/usr/bin/env python3
"""Checks the unity groups of the library's C++ sources and the bundles of its CUDA sources
(src/unity_groups.cmake) in a configured build.

Complete: every C++ source of the library targets compiles exactly once, as a member of one unity
source or alone, and alone only where it must: it has compile flags of its own (which CMake's unity
build leaves out of a group), or it includes itself once per SIMD target (Highway's
foreach_target.h).

Collision-free: the members of one unity source share one translation unit, so what each declares
for itself at namespace scope is visible to the members after it. A name one member keeps to itself
(anything in an anonymous namespace; a static function or variable; a namespace-scope const; an
alias, typedef or using-declaration of the .cpp; a class, function or variable that no header under
src/ names; a macro it does not #undef) must be neither declared nor used by another member of its
group, so that each member's names resolve as they did alone; and no member may have a
using-directive at namespace scope. The same alias in both members names the same entity and
passes (a type alias only at namespace scope in both: inside a function it draws clang's -Wshadow). Read from the tokens of the sources (comments and literals removed): no
compiler, about a second. It errs towards reporting: a name another member uses only for a local
variable is reported too; rename one of the two.

    scripts/check-library-unity.py BUILD_DIR
"""
import collections
import glob
import json
import os
import re
import sys

LIBRARY_TARGETS = ('fp4kit_lib', 'fp4kit_lib_fuzzed', 'fp4kit_gpu_engine', 'fp4kit_cuda')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOKEN = re.compile(r'''
    (?P<directive>^[ \t]*\#(?:\\\n|/\*.*?\*/|[^\n])*)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<raw>(?:u8|[uUL])?R"(?P<delim>[^(\s"\\]{0,16})\(.*?\)(?P=delim)")
  | (?P<string>(?:u8|[uUL])?"(?:[^"\\\n]|\\.)*")
  | (?P<char>(?:u8|[uUL])?'(?:[^'\\\n]|\\.)+')
  | (?P<number>\.?\d(?:[\w.]|'\w|[eEpP][+-])*)
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<punct>::|->|\S)
''', re.M | re.S | re.X)
IDENT = re.compile(r'[A-Za-z_]\w*')

KEYWORDS = set('''alignas alignof asm auto bool break case catch char char8_t char16_t char32_t class concept
    const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype default delete do
    double dynamic_cast else enum explicit export extern false float for friend goto if inline int long mutable
    namespace new noexcept nullptr operator private protected public register reinterpret_cast requires return
    short signed sizeof static static_assert static_cast struct switch template this thread_local throw true try
    typedef typeid typename union unsigned using virtual void volatile wchar_t while final override'''.split())

# Declarations that name an entity declared elsewhere: the same text in two members names the same one.
# The same type alias inside a function of the other member would still draw clang's -Wshadow.
ALIASES = ('alias', 'namespace alias', 'using-declaration', 'typedef')
TYPE_ALIASES = ('alias', 'typedef')


def tokens_of(text):
    """(kind, text, line) of the code; literals become "", comments go; directives are kept whole."""
    out = []
    for m in TOKEN.finditer(text):
        kind = m.lastgroup if m.lastgroup != 'delim' else 'raw'
        if kind == 'comment':
            continue
        line = text.count('\n', 0, m.start()) + 1
        if kind in ('raw', 'string', 'char'):
            out.append(('literal', '""', line))
        else:
            out.append((kind, m.group(0), line))
    return out


class Headers:
    """What the headers under src/ make public (their identifiers, and the names they declare
    extern), and the project's namespaces (those that any file under src/ opens)."""

    def __init__(self):
        self.names, self.externs, self.namespaces = set(), set(), set()
        for path in glob.glob(os.path.join(ROOT, 'src', '**', '*'), recursive=True):
            if not path.endswith(('.h', '.cuh', '.cpp', '.cu')):
                continue
            text = open(path, encoding='utf-8').read()
            code = tokens_of(text)
            for i, (_, tok, _) in enumerate(code):
                if tok == 'namespace':
                    j = i + 1
                    while j < len(code) and (code[j][0] == 'ident' or code[j][1] == '::'):
                        if code[j][0] == 'ident' and code[j][1] != 'inline':
                            self.namespaces.add(code[j][1])
                        j += 1
            if path.endswith(('.cpp', '.cu')):
                continue
            for kind, tok, _ in code:
                if kind == 'ident':
                    self.names.add(tok)
                elif kind == 'directive':
                    self.names.update(IDENT.findall(tok))
            for m in re.finditer(r'\bextern\b((?:[^;{}"]|"[^"]*")*);', text):
                for piece in m.group(1).split(','):
                    idents = IDENT.findall(piece.split('=')[0].split('[')[0])
                    if idents:
                        self.externs.add(idents[-1])


class Source:
    """What one .cpp keeps to itself at namespace scope, and the names it uses, from its tokens."""

    def __init__(self, path, headers):
        self.path = path
        self.rel = os.path.relpath(path, ROOT)
        self.headers = headers
        self.local = {}             # name -> (kind, line, text, innermost named namespace)
        self.uses = set()           # names used unqualified (or after a bare ::), not as members
        self.qualified = set()      # (namespace, name) of the uses qualified by a project namespace
        self.directives = []        # (line, text) of the using-directives at namespace scope
        self.macros = {}            # name -> line of the macros defined and not #undef'd by the end
        self.alias_texts = set()    # every alias, namespace alias and using-declaration, at any scope
        self.includes_foreach_target = False
        self.tokens = []
        for kind, tok, line in tokens_of(open(path, encoding='utf-8').read()):
            if kind == 'directive':
                self.directive(tok, line)
            else:
                self.tokens.append((kind, tok, line))
        self.tokens = drop_launch_bounds(self.tokens)
        toks = self.tokens
        for i, (kind, tok, _) in enumerate(toks):
            if kind != 'ident' or tok in KEYWORDS or (i and toks[i - 1][1] in ('.', '->')):
                continue
            if i > 1 and toks[i - 1][1] == '::' and toks[i - 2][0] == 'ident':
                if toks[i - 2][1] in headers.namespaces:
                    self.qualified.add((toks[i - 2][1], tok))
                continue  # a class's member, or a name of another library: no member's own
            self.uses.add(tok)
        for i, (_, tok, _) in enumerate(toks):
            if tok in ('using', 'namespace') and (not i or toks[i - 1][1] in (';', '{', '}')):
                end = next((j for j in range(i, len(toks)) if toks[j][1] in (';', '{')), i)
                if toks[end][1] == ';':
                    self.alias_texts.add(' '.join(t[1] for t in toks[i:end]))
        self.namespace = ''
        self.parse()

    def directive(self, text, line):
        body = re.sub(r'/\*.*?\*/|//[^\n]*', ' ', text.replace('\\\n', ' ')).strip()[1:].strip()
        m = re.match(r'(\w+)\s*(.*)', body, re.S)
        if not m:
            return
        word, rest = m.groups()
        if word == 'define':
            name = IDENT.match(rest).group(0)
            self.macros[name] = line
            self.uses.update(IDENT.findall(rest[len(name):]))
        elif word == 'undef':
            self.macros.pop(rest.split()[0], None)
        elif word == 'include':
            self.includes_foreach_target |= 'foreach_target.h' in rest
        else:
            self.uses.update(IDENT.findall(rest))

    def declare(self, name, kind, line, text=''):
        if name and name not in KEYWORDS:
            self.local.setdefault(name, (kind, line, text, self.namespace))

    def parse(self):
        """Walks the namespace scopes; class and function bodies and initializers are skipped whole."""
        toks = self.tokens
        scopes = []  # for each open namespace: its name ('' where anonymous; None for extern "C")
        statement = []
        i = 0
        while i < len(toks):
            kind, tok, line = toks[i]
            anonymous = '' in scopes
            self.namespace = next((s for s in reversed(scopes) if s), '')
            if tok == '}':
                if scopes:
                    scopes.pop()
                statement = []
                i += 1
            elif tok == ';':
                self.statement(statement, anonymous)
                statement = []
                i += 1
            elif tok == '{':
                words = [t[1] for t in statement]
                if words[:1] == ['namespace'] or words[:2] == ['inline', 'namespace']:
                    names = [w for w in words if w not in ('inline', 'namespace', '::')]
                    scopes.append(names[-1] if names else '')
                    statement = []
                    i += 1
                    continue
                if words[:1] == ['extern'] and len(words) == 2 and statement[1][0] == 'literal':
                    scopes.append(None)
                    statement = []
                    i += 1
                    continue
                end = self.matching(i)
                head = strip_template(statement)
                hwords = [t[1] for t in head]
                if hwords[:1] and hwords[0] in ('struct', 'class', 'union', 'enum') and \
                        top_level(head, '(', skip_calls=('alignas',)) is None:
                    self.record_class(head, i, end, anonymous)
                    statement = statement + [('punct', '{}', line)]
                elif top_level(head, '(') is not None and top_level(head, '=', before='(') is None:
                    self.statement(statement, anonymous, body=True)
                    statement = []
                else:
                    statement = statement + [('punct', '{}', line)]
                i = end + 1
            else:
                statement.append(toks[i])
                i += 1

    def matching(self, i):
        depth = 0
        for j in range(i, len(self.tokens)):
            t = self.tokens[j][1]
            if t == '{':
                depth += 1
            elif t == '}':
                depth -= 1
                if depth == 0:
                    return j
        return len(self.tokens) - 1

    def record_class(self, head, open_brace, close_brace, anonymous):
        keyword = head[0][1]
        rest = skip_attributes([t for t in head[1:] if t[1] not in ('class', 'struct')])
        if not rest or rest[0][0] != 'ident':
            return
        name = rest[0][1]
        if len(rest) > 1 and rest[1][1] in ('<', '::'):
            return  # a specialization of another's template, or a class that a header declared
        if anonymous or name not in self.headers.names:
            self.declare(name, keyword, head[0][2])
        if keyword == 'enum' and [t[1] for t in head[1:2]] not in (['class'], ['struct']):
            expect, depth = True, 0
            for kind, tok, line in self.tokens[open_brace + 1:close_brace]:
                if tok in '([{':
                    depth += 1
                elif tok in ')]}':
                    depth -= 1
                elif tok == ',' and depth == 0:
                    expect = True
                    continue
                if expect and kind == 'ident' and (anonymous or tok not in self.headers.names):
                    self.declare(tok, 'enumerator', line)
                expect = False

    def statement(self, stmt, anonymous, body=False):
        """One declaration at namespace scope (body: a function definition, its body skipped)."""
        if not stmt:
            return
        line = stmt[0][2]
        words = [t[1] for t in stmt]
        text = ' '.join(words)
        if words[0] == 'using':
            if words[1:2] == ['namespace']:
                self.directives.append((line, text))
            elif '=' in words:
                self.declare(words[1], 'alias', line, text)
            else:
                self.declare(words[-1], 'using-declaration', line, text)
            return
        if words[0] == 'namespace' and '=' in words:
            self.declare(words[1], 'namespace alias', line, text)
            return
        if words[0] in ('static_assert', 'extern', 'friend') and not body:
            return
        if words[0] == 'typedef':
            idents = [t for t in stmt if t[0] == 'ident' and t[1] not in KEYWORDS]
            if idents:
                self.declare(idents[-1][1], 'typedef', line, text)
            return
        head = strip_template(stmt)
        hwords = [t[1] for t in head]
        if hwords[:1] and hwords[0] in ('struct', 'class', 'union', 'enum'):
            # A forward declaration, or "struct X {...} x;": its declarators follow the body.
            if '{}' in hwords:
                for name in declarator_names(head[hwords.index('{}') + 1:]):
                    self.declare(name, 'variable', line)
            return
        paren = top_level(head, '(')
        eq = top_level(head, '=')
        static = 'static' in hwords[:paren]
        if paren is not None and (eq is None or paren < eq) and top_level(head, '{}', before='(') is None:
            # A function, or a variable initialized in parentheses: the name before the ( either way.
            at = paren - 1
            if at < 0 or head[at][1] == '>':
                return  # an explicit specialization
            before = [t[1] for t in head[max(0, at - 3):at + 1]]
            if 'operator' in before:
                name = 'operator' + ''.join(before[before.index('operator') + 1:])
            elif head[at][0] != 'ident' or (at > 0 and head[at - 1][1] == '::'):
                return  # defines what a class or a namespace declared
            else:
                name = head[at][1]
            if anonymous or static or name not in self.headers.names:
                self.declare(name, 'function' if body else 'function declaration', line)
            return
        # A const at namespace scope has internal linkage unless a header declared it extern.
        constant = any(w in ('const', 'constexpr') for w in hwords) and 'inline' not in hwords
        for name in declarator_names(head):
            if anonymous or static or name not in self.headers.names or \
                    (constant and name not in self.headers.externs):
                self.declare(name, 'variable', line)


def drop_launch_bounds(toks):
    """The tokens without CUDA's `__launch_bounds__(...)`, an attribute of the kernel after it."""
    out, i = [], 0
    while i < len(toks):
        if toks[i][1] == '__launch_bounds__' and i + 1 < len(toks) and toks[i + 1][1] == '(':
            depth, i = 0, i + 1
            while i < len(toks):
                depth += {'(': 1, ')': -1}.get(toks[i][1], 0)
                i += 1
                if depth == 0:
                    break
            continue
        out.append(toks[i])
        i += 1
    return out


def top_level(toks, what, before=None, skip_calls=()):
    """Index of the first `what` outside brackets and template argument lists (None if there is
    none, or if `before` comes first)."""
    depth = angle = 0
    for i, (kind, tok, _) in enumerate(toks):
        if depth == 0 and angle == 0:
            if before is not None and tok == before:
                return None
            if tok == what and not (what == '(' and i and toks[i - 1][1] in skip_calls):
                return i
        if tok in '([{':
            depth += 1
        elif tok in ')]}':
            depth -= 1
        elif depth == 0 and tok == '<' and i and (toks[i - 1][0] == 'ident' or toks[i - 1][1] == 'template'):
            angle += 1
        elif depth == 0 and tok == '>' and angle:
            angle -= 1
        elif depth == 0 and tok == '=':
            angle = 0  # past the type, a < compares
    return None


def strip_template(toks):
    """The declaration without its leading template<...> heads, attributes and alignas(...)."""
    toks = list(toks)
    while len(toks) > 1 and toks[0][1] == 'template' and toks[1][1] == '<':
        depth = 0
        for j in range(1, len(toks)):
            if toks[j][1] in '<(':
                depth += 1
            elif toks[j][1] in '>)':
                depth -= 1
                if depth == 0:
                    toks = toks[j + 1:]
                    break
        else:
            return []
    return skip_attributes(toks)


def skip_attributes(toks):
    while toks:
        if toks[0][1] == '[' and len(toks) > 1 and toks[1][1] == '[':
            j = next((k for k in range(2, len(toks) - 1) if toks[k][1] == ']' and toks[k + 1][1] == ']'), None)
            if j is None:
                return toks
            toks = toks[j + 2:]
        elif toks[0][1] == 'alignas' and len(toks) > 1 and toks[1][1] == '(':
            depth = 0
            for j in range(1, len(toks)):
                depth += (toks[j][1] == '(') - (toks[j][1] == ')')
                if depth == 0:
                    toks = toks[j + 1:]
                    break
        else:
            return toks
    return toks


def declarator_names(toks):
    """The names a variable declaration declares: each declarator's identifier before =, {, [."""
    pieces, start, depth = [], 0, 0
    for i, (_, tok, _) in enumerate(toks):
        if tok in '([{':
            depth += 1
        elif tok in ')]}':
            depth -= 1
        elif tok == ',' and depth == 0 and top_level(toks[start:i], '=') is not None:
            pieces.append(toks[start:i])
            start = i + 1
    pieces.append(toks[start:])
    names = []
    for piece in pieces:
        end = min([j for j in (top_level(piece, t) for t in ('=', '{}', '[')) if j is not None], default=len(piece))
        idents = [t[1] for t in piece[:end] if t[0] == 'ident' and t[1] not in KEYWORDS]
        if idents:
            names.append(idents[-1])
    return names


def command_flags(command):
    """A compile command's flags, without its input, output and dependency files."""
    flags, skip = set(), False
    for word in command.split()[1:]:
        if skip:
            skip = False
        elif word in ('-o', '-c', '-MT', '-MF'):
            skip = True
        else:
            flags.add(word)
    return flags


def collisions(members, group):
    """What one member of a unity source keeps to itself that another member declares or uses."""
    found = []
    for s in members:
        if s.includes_foreach_target:
            found.append('%s (group %s) includes hwy/foreach_target.h: it must compile alone' % (s.rel, group))
        for line, text in s.directives:
            found.append('%s:%d (group %s): "%s" at namespace scope reaches the files after it in its group; '
                         'qualify the names, or move it into the functions' % (s.rel, line, group, text))
    for a in members:
        for b in members:
            if a is b:
                continue
            for name, (kind, line, text, namespace) in sorted(a.local.items()):
                theirs = b.local.get(name)
                if kind in ALIASES and (text == theirs[2] if theirs else
                                        kind not in TYPE_ALIASES and text in b.alias_texts):
                    continue
                if theirs:
                    if a.path < b.path:
                        found.append('%s:%d and %s:%d (group %s) both declare %s (%s; %s): rename one' %
                                     (a.rel, line, b.rel, theirs[1], group, name, kind, theirs[0]))
                elif name in b.uses or (namespace, name) in b.qualified:
                    found.append('%s:%d (group %s) keeps %s to itself (%s), and %s uses that name too: rename '
                                 'one' % (a.rel, line, group, name, kind, b.rel))
            for macro, line in sorted(a.macros.items()):
                if macro in b.uses or (macro in b.macros and a.path < b.path):
                    found.append('%s:%d (group %s) defines the macro %s, which %s uses or defines too: #undef it '
                                 'at the end of the file, or rename it' % (a.rel, line, group, macro, b.rel))
    return found


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else 'build')
    try:
        commands = json.load(open(os.path.join(build, 'compile_commands.json')))
    except OSError as e:
        sys.exit('check-library-unity: %s (configure the build first)' % e)
    target_of = re.compile(r' -o CMakeFiles/(%s)\.dir/' % '|'.join(LIBRARY_TARGETS))
    unity = collections.defaultdict(dict)   # target -> unity source -> its members
    alone = collections.defaultdict(dict)   # target -> source compiled alone -> its flags
    unity_flags = {}                         # target -> the flags of its unity sources
    for e in commands:
        m = target_of.search(e['command'])
        path = os.path.normpath(os.path.join(e['directory'], e['file']))
        if not m or not path.endswith(('.cpp', '.cxx', '.cu')):
            continue
        if '/Unity/' in path:
            unity[m.group(1)][path] = [os.path.normpath(p) for p in
                                       re.findall(r'^#include "([^"]+)"', open(path).read(), re.M)]
            if path.endswith('.cxx'):  # the C++ groups' flags (the CUDA bundles are nvcc's)
                unity_flags[m.group(1)] = command_flags(e['command'])
        else:
            alone[m.group(1)][path] = command_flags(e['command'])
    if not unity:
        sys.exit('check-library-unity: %s compiles no library source in a unity group (configure it with '
                 'FP4KIT_LIB_UNITY=ON)' % build)

    problems, standalone = [], []
    compiled = collections.Counter()
    for target in LIBRARY_TARGETS:
        for members in unity[target].values():
            compiled.update(members)
        compiled.update(list(alone[target]))
    problems += ['%s compiles %d times' % (os.path.relpath(p, ROOT), n) for p, n in sorted(compiled.items()) if n > 1]
    headers = Headers()
    for target in LIBRARY_TARGETS:
        for path, flags in sorted(alone[target].items()):
            rel = os.path.relpath(path, ROOT)
            own = sorted(flags - unity_flags[target]) if target in unity_flags else []
            if path.endswith('.cu'):
                standalone.append('%s (CUDA kernels large enough to compile alone)' % rel)
            elif Source(path, headers).includes_foreach_target:
                standalone.append('%s (compiled once per SIMD target)' % rel)
            elif own:
                standalone.append('%s (flags of its own: %s)' % (rel, ' '.join(own)))
            else:
                problems.append('%s compiles alone: it needs a UNITY_GROUP (src/unity_groups.cmake)' % rel)
        for source, members in sorted(unity[target].items()):
            group = re.sub(r'^unity_(.*)_(?:cxx\.cxx|cu\.cu)$', r'\1', os.path.basename(source))
            problems += collisions([Source(p, headers) for p in members], group)

    for p in problems:
        print('check-library-unity: ' + p)
    print('check-library-unity: %s: %d library sources in %d unity sources, %d alone%s; %d problems' %
          (build, sum(len(m) for u in unity.values() for m in u.values()), sum(len(u) for u in unity.values()),
           len(standalone), ''.join('\n  alone: ' + s for s in standalone), len(problems)))
    sys.exit(1 if problems else 0)


if __name__ == '__main__':
    main()
