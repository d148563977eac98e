#!/usr/bin/python3
"""The calls among the window's files (vl-window*.c anywhere under ui/: today ui/window/):
which file names a non-static function (or takes the address of one) that another defines.
Prints each directed pair with the names, then whether the graph is a DAG; exits 1 when a cycle
exists (a file reachable from a file it reaches), naming the files of each cycle, or when a part
calls up into vl-window.c (the top: the parts never call back into it).

usage: check-window-calls.py [--tap] [SRCDIR]   (SRCDIR: the repository root; default: this script's
parent; --tap: TAP output, one test case, the report as comments: meson's "window-calls" test)
"""
import collections
import glob
import os
import re
import sys

args = sys.argv[1:]
tap = '--tap' in args
args = [a for a in args if a != '--tap']
root = args[0] if args else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if tap:
    print('1..2')


def say(text):
    print(('# ' if tap else '') + text)


files = sorted(glob.glob(os.path.join(root, 'ui', '**', 'vl-window*.c'), recursive=True))
if not files:
    say(f'no vl-window*.c under {root}/ui')
    if tap:
        print('not ok 1 the window files are there')
    sys.exit(1)


def strip(src):
    """The source without comments, string and character literals."""
    out = re.sub(r'/\*.*?\*/', ' ', src, flags=re.S)
    out = re.sub(r'//[^\n]*', ' ', out)
    out = re.sub(r'"(?:\\.|[^"\\\n])*"', '""', out)
    out = re.sub(r"'(?:\\.|[^'\\\n])*'", "''", out)
    return out


src = {}
defs = {}      # name -> the file that defines it (non-static)
for f in files:
    b = os.path.basename(f)
    if b in src:
        say(f'two files named {b} under ui/')
        sys.exit(1)
    s = strip(open(f, encoding='utf-8').read())
    src[b] = s
    # GNU style: the return type ends the previous line, the name starts a line at column 0,
    # the body's brace follows the parameter list.  Only top-level text (depth 0) counts.
    depth = 0
    pos = 0
    top = []
    for ch in s:
        if ch == '{':
            depth += 1
        elif ch == '}':
            depth -= 1
        top.append(ch if depth == 0 or ch == '{' and depth == 1 else ('\n' if ch == '\n' else ' '))
    t = ''.join(top)
    for m in re.finditer(r'(?m)^([A-Za-z_][\w \t\*]*)\n([A-Za-z_]\w*)\s*\(([^;{]*?)\)\s*\{', t):
        rtype, name = m.group(1), m.group(2)
        if re.search(r'\bstatic\b', rtype) or name in ('if', 'for', 'while', 'switch', 'return'):
            continue
        if name in defs and defs[name] != b:
            say(f'{name} defined in {defs[name]} and {b}')
            sys.exit(1)
        defs[name] = b

edges = collections.defaultdict(set)
for b, s in src.items():
    for name in set(re.findall(r'\b[A-Za-z_]\w*\b', s)):
        d = defs.get(name)
        if d is not None and d != b:
            edges[(b, d)].add(name)

nodes = sorted(src)
for (a, b), names in sorted(edges.items()):
    say(f'{a} -> {b}: {len(names)}: {" ".join(sorted(names))}')
say(f'{len(edges)} directed pairs among {len(nodes)} files, {len(defs)} shared functions')

g = collections.defaultdict(set)
for a, b in edges:
    g[a].add(b)
reach = {}
for n in nodes:
    seen, stack = set(), [n]
    while stack:
        for y in g[stack.pop()]:
            if y not in seen:
                seen.add(y)
                stack.append(y)
    reach[n] = seen
# strongly connected components of more than one file (or a file that reaches itself)
comps, done = [], set()
for n in nodes:
    if n in done:
        continue
    comp = {n} | {m for m in reach[n] if n in reach[m]}
    done |= comp
    if len(comp) > 1:
        comps.append(sorted(comp))
up = sorted(a for (a, b) in edges if b == 'vl-window.c')
for a in up:
    say(f'{a} calls up into vl-window.c: ' + ' '.join(sorted(edges[(a, 'vl-window.c')])))
if tap:
    print(('not ok' if up else 'ok') + ' 1 no part calls up into vl-window.c')
pairs = sum(1 for a in nodes for b in nodes if a < b and b in reach[a] and a in reach[b])
say(f'mutually reachable pairs: {pairs}')
if comps:
    for c in comps:
        say('cycle among: ' + ' '.join(c))
    if tap:
        print("not ok 2 no circle among the window's files")
    sys.exit(1)
# a layering: each file after every file it calls
order, placed = [], set()
while len(order) < len(nodes):
    for n in nodes:
        if n not in placed and g[n] <= placed:
            order.append(n)
            placed.add(n)
say('no cycle; from the leaves up: ' + ' '.join(order))
if tap:
    print("ok 2 no circle among the window's files")
sys.exit(1 if up else 0)
