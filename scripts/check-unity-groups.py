#!/usr/bin/env python3
"""Checks that compiling the test files in unity groups (tests/unity_groups.cmake) changes no call.

For every group of a clang build of fp4kit_tests, each member file is compiled alone and the group's
unity source as a whole, both to LLVM IR at -O0 (no inlining). For every function the member's own
IR defines (its tests, its helpers, the header code it instantiates) the unity IR must define the
same function calling the same functions and referring to the same objects and string constants:
a name that resolved to something else in the group (another file's helper, an overload from a
header only a group-mate includes) would show as a different callee. What only numbering tells
apart is renamed first (string and constant pools, lambdas, static initializers). Differences that
only the exception-handling code of libstdc++'s own templates shows (clang leaves out a landing pad
when it already knows that a callee cannot throw) are listed apart and do not fail the check.

    scripts/check-unity-groups.py BUILD_DIR     (a clang build, e.g. build-asan of scripts/test.sh)
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
commands = json.load(open(os.path.join(build, 'compile_commands.json')))
base = next(e['command'] for e in commands if e['file'].endswith('/tests/test_data.cpp'))
if 'clang' not in base.split()[0]:
    sys.exit('check-unity-groups: %s is not a clang build' % build)
# The test files' own flags at -O0, the precompiled header's headers included as text instead.
cmd = base.split(' -o ')[0]
cmd = re.sub(r' -Xclang -include-pch -Xclang \S+ -Xclang -include -Xclang \S+', '', cmd)
cmd = re.sub(r' -O\d', '', cmd).replace(' -g1', '') + ' -O0'
pch = os.path.join(build, 'CMakeFiles/fp4kit_tests.dir/cmake_pch.hxx')
cmd += ''.join(' -include ' + h for h in re.findall(r'#include <([^>]+)>', open(pch).read()))
cmd += ' -S -emit-llvm -Wno-everything'

# The unity sources the build compiles now (the directory may hold those of earlier groupings).
groups = {}
for e in commands:
    path = os.path.join(e['directory'], e['file'])
    if re.search(r'/fp4kit_tests\.dir/Unity/unity_tests_\w+\.cxx$', path):
        groups[path] = re.findall(r'#include "([^"]+)"', open(path).read())
if not groups:
    sys.exit('check-unity-groups: no unity sources of fp4kit_tests in %s' % build)

scratch = tempfile.mkdtemp(prefix='unity-check-')
def ir_of(src):
    return os.path.join(scratch, src.strip('/').replace('/', '_') + '.ll')
def compile_ir(src):
    r = subprocess.run(cmd + ' -o ' + ir_of(src) + ' ' + src, shell=True, cwd=build, capture_output=True, text=True)
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
compared = 0
differ, std_only = [], []
for unity, members in groups.items():
    whole = functions(ir_of(unity))
    inits = collections.Counter(v for k, vs in whole.items() if INIT.match(k) for v in vs)
    for member in members:
        for name, refsets in functions(ir_of(member)).items():
            if name.startswith('_GLOBAL__sub_I_'):
                continue
            compared += len(refsets)
            have = inits if INIT.match(name) else collections.Counter(whole.get(name, []))
            if all(have[k] >= n for k, n in collections.Counter(refsets).items()):
                continue
            # libstdc++'s templates: only the destructor calls of an exception path may differ.
            gone = set().union(*refsets) ^ set().union(*whole.get(name, [frozenset()]))
            if name.startswith(('_ZNSt', '_ZSt', '_ZNKSt', '_ZNSa', '_ZN9__gnu_cxx')) and all(
                    g.startswith(('_ZNSt', '_ZNSa')) and g.endswith('D2Ev') or '_M_put_node' in g for g in gone):
                std_only.append((os.path.basename(member), name))
            else:
                differ.append((os.path.basename(member), name, sorted(gone)[:4]))
for member, name, gone in differ:
    print('differs: %s: %s: %s' % (member, name[:160], gone))
print('check-unity-groups: %d groups, %d functions compared, %d differ; %d only in the exception paths of '
      'libstdc++ templates' % (len(groups), compared, len(differ), len(std_only)))
sys.exit(1 if differ else 0)
