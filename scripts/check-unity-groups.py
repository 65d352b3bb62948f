#!/usr/bin/env python3
"""Checks that compiling in unity groups (tests/unity_groups.cmake, src/unity_groups.cmake) changes no call.

For every group of a clang build (the test files of fp4kit_tests, the library's sources), each
member file is compiled alone and the group's unity source as a whole, both to LLVM IR at -O0 (no
inlining, no sanitizer instrumentation) with the flags the build gives the unity source. For every
function the member's own IR defines (its tests, its helpers, the header code it instantiates) the unity IR must define the
same function calling the same functions and referring to the same objects and string constants:
a name that resolved to something else in the group (another file's helper, an overload from a
header only a group-mate includes) would show as a different callee. What only numbering tells
apart is renamed first (string and constant pools, lambdas, static initializers). Differences that
only the exception-handling code of libstdc++'s own templates shows (clang leaves out a landing pad
when it already knows that a callee cannot throw), and a read of an extern constant that a
group-mate defines (the unity source knows its value and uses it in place), are listed apart and do
not fail the check.

    scripts/check-unity-groups.py BUILD_DIR [TARGET...]   (a clang build, e.g. build-asan of scripts/test.sh;
                                                          TARGET: only its groups, e.g. fp4kit_lib)
"""
import collections
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile

build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else 'build-asan')
targets = sys.argv[2:] or ['fp4kit_tests', 'fp4kit_lib', 'fp4kit_lib_fuzzed', 'fp4kit_gpu_engine', 'fp4kit_cuda']
commands = json.load(open(os.path.join(build, 'compile_commands.json')))

def ir_command(command):
    """A unity source's compile command, for its members too: -O0 and no sanitizer, the precompiled
    header's headers (of the test files) included as text instead."""
    cmd = command.split(' -o ')[0]
    pch = re.search(r' -Xclang -include-pch -Xclang \S+ -Xclang -include -Xclang (\S+)', cmd)
    if pch:
        cmd = cmd.replace(pch.group(0), '')
        cmd += ''.join(' -include ' + h for h in re.findall(r'#include <([^>]+)>', open(pch.group(1)).read()))
    cmd = re.sub(r' -O\d| -g1| -fsanitize\S*| -fno-sanitize\S*| -fno-omit-frame-pointer', '', cmd)
    return cmd + ' -O0 -S -emit-llvm -Wno-everything'

# The unity sources the build compiles now (the directory may hold those of earlier groupings),
# each with its members and the command that compiles them.
groups, command_of = {}, {}
for e in commands:
    path = os.path.join(e['directory'], e['file'])
    if re.search(r'/(%s)\.dir/Unity/unity_\w+\.cxx$' % '|'.join(targets), path):
        if 'clang' not in e['command'].split()[0]:
            sys.exit('check-unity-groups: %s is not a clang build' % build)
        groups[path] = re.findall(r'#include "([^"]+)"', open(path).read())
        for src in [path] + groups[path]:
            command_of[src] = ir_command(e['command'])
if not groups:
    sys.exit('check-unity-groups: no unity sources in %s' % build)

scratch = tempfile.mkdtemp(prefix='unity-check-')
def ir_of(src):
    return os.path.join(scratch, src.strip('/').replace('/', '_') + '.ll')
def compile_ir(src):
    r = subprocess.run(command_of[src] + ' -o ' + ir_of(src) + ' ' + src, shell=True, cwd=build, capture_output=True,
                       text=True)
    return src, r.returncode, r.stderr[-3000:]
sources = [s for u, members in groups.items() for s in [u] + members]
with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
    for src, rc, err in pool.map(compile_ir, sources):
        if rc:
            sys.exit('check-unity-groups: %s does not compile:\n%s' % (src, err))

LAMBDA = re.compile(r'\d+\$_\d+')  # clang's numbered names of lambdas (length-prefixed in a mangled name)
def functions(path):
    """Function name -> list of sets of what its body refers to (callees, globals, constants)."""
    text = open(path).read()
    strs = dict(re.findall(r'^(@\.str(?:\.\d+)?) = [^\n]*?c"((?:[^"\\]|\\.)*)"', text, re.M))
    def named_strings(s):
        return re.sub(r'@\.str(?:\.\d+)?\b', lambda m: 'str<' + strs.get(m.group(0), '?') + '>', s)
    consts = {k: named_strings(v).replace('@', '').replace('>', ')')
              for k, v in re.findall(r'^(@constinit(?:\.\d+)?) = private unnamed_addr constant (.*?)(?:, align \d+)?$',
                                     text, re.M)}
    found = collections.defaultdict(list)
    for m in re.finditer(r'^define [^\n]*?@("?[^\s(]+"?)\(.*?\n\}\n', text, re.M | re.S):
        body = named_strings(m.group(0).split('{', 1)[1])
        body = re.sub(r'@constinit(?:\.\d+)?\b', lambda c: 'ci<' + consts.get(c.group(0), '?') + '>', body)
        body = LAMBDA.sub('$_', body)
        refs = set(re.findall(r'@("[^"]*"|[\w.$]+)', body)) | set(re.findall(r'(?:str|ci)<(?:[^>\\]|\\.)*>', body))
        refs = {re.sub(r'^(__cxx_global_var_init|__const\.[\w.]*?)(\.\d+)?$', r'\1', r) for r in refs}
        refs -= {'__clang_call_terminate', '__gxx_personality_v0', '__cxa_begin_catch', '__cxa_end_catch',
                 '__cxa_rethrow'}
        found[LAMBDA.sub('$_', m.group(1))].append(frozenset(refs))
    return found

INIT = re.compile(r'^__cxx_global_var_init(\.\d+)?$')
# What only the exception path of a libstdc++ template calls: destructors, and the trap after a rethrow.
def exception_path_only(ref):
    return ref.startswith(('_ZNSt', '_ZNSa')) and ref.endswith('D2Ev') or '_M_put_node' in ref or \
        ref.startswith('_ZSt8_Destroy') or ref == 'llvm.trap'
compared = 0
differ, std_only, folded = [], [], []
for unity, members in groups.items():
    whole = functions(ir_of(unity))
    constants = set(re.findall(r'^@("[^"]*"|[\w.$]+) = (?!external)[^\n]*?\bconstant\b', open(ir_of(unity)).read(),
                               re.M))
    inits = collections.Counter(v for k, vs in whole.items() if INIT.match(k) for v in vs)
    for member in members:
        for name, refsets in functions(ir_of(member)).items():
            if name.startswith('_GLOBAL__sub_I_'):
                continue
            compared += len(refsets)
            have = inits if INIT.match(name) else collections.Counter(whole.get(name, []))
            if all(have[k] >= n for k, n in collections.Counter(refsets).items()):
                continue
            # libstdc++'s templates: only what an exception path calls may differ.
            gone = set().union(*refsets) ^ set().union(*whole.get(name, [frozenset()]))
            if name.startswith(('_ZNSt', '_ZSt', '_ZNKSt', '_ZNSa', '_ZN9__gnu_cxx')) and all(map(exception_path_only, gone)):
                std_only.append((os.path.basename(member), name))
            elif gone <= set().union(*refsets) & constants:
                folded.append((os.path.basename(member), name, sorted(gone)))
            else:
                differ.append((os.path.basename(member), name, sorted(gone)[:4]))
for member, name, gone in differ:
    print('differs: %s: %s: %s' % (member, name[:160], gone))
for member, name, gone in folded:
    print('constant in place: %s: %s: %s' % (member, name[:160], gone))
print('check-unity-groups: %d groups, %d functions compared, %d differ; %d only in the exception paths of '
      'libstdc++ templates, %d only in reading a group-mate\'s constant' %
      (len(groups), compared, len(differ), len(std_only), len(folded)))
sys.exit(1 if differ else 0)
