#!/usr/bin/python3
"""The shape of the code as issue 14 asks a newcomer to find it, as TAP:

1. no cycle among engine/'s modules (a module is NAME.c with NAME.h, in the folder or any folder
   under it; it depends on another when its .c or .h includes the other's .h), nor among ui/'s
   (ui/window/, ui/views/, ... together); two modules of one name under a folder are an error
   (every subfolder is on the include path, so "NAME.h" must name one file);
2. no function over 200 lines in engine/, ui/ or app/ and their subfolders (a function is a body
   that opens with a '{' in the first column, as the house style writes them).

Usage: check-structure.py SOURCE_ROOT
"""
import glob
import os
import re
import sys

MAX_LINES = 200


def sources_under(folder, ext):
    """Every file ending in EXT in FOLDER and the folders under it, sorted."""
    return sorted(glob.glob(os.path.join(folder, "**", "*" + ext), recursive=True))


def module_graph(folder):
    """The include graph of FOLDER's modules, and the names defined twice under it."""
    where = {}
    for c in sources_under(folder, ".c"):
        where.setdefault(os.path.basename(c)[:-2], []).append(os.path.dirname(c))
    twice = ["%s in %s" % (m, ", ".join(os.path.relpath(d, folder) for d in dirs))
             for m, dirs in sorted(where.items()) if len(dirs) > 1]
    graph = {}
    for m in sorted(where):
        text = ""
        for ext in (".c", ".h"):
            p = os.path.join(where[m][0], m + ext)
            if os.path.exists(p):
                with open(p, encoding="utf-8") as f:
                    text += f.read()
        inc = {os.path.basename(i) for i in re.findall(r'#include "([^"]+)\.h"', text)}
        graph[m] = sorted(i for i in inc if i in where and i != m)
    return graph, twice


def cycles(graph):
    """Tarjan's strongly connected components of more than one module."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def long_functions(paths):
    found = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        i = 1
        while i < len(lines):
            if lines[i].startswith("{"):
                j = i - 1
                while j > 0 and "(" not in lines[j]:
                    j -= 1
                head = lines[j].split("(")[0].split()
                name = head[-1] if head else "?"
                k = i + 1
                while k < len(lines) and not lines[k].startswith("}"):
                    k += 1
                if k - i + 1 > MAX_LINES:
                    found.append("%s: %s, %d lines" % (path, name, k - i + 1))
                i = k
            i += 1
    return found


def main():
    root = sys.argv[1]
    checks = []
    for folder in ("engine", "ui"):
        graph, twice = module_graph(os.path.join(root, folder))
        found = cycles(graph)
        if len(graph) < 5:
            found = ["only %d modules found in %s/" % (len(graph), folder)]
        checks.append(("no include cycle among %s/'s %d modules" % (folder, len(graph)),
                       ["cycle: " + " <-> ".join(c) for c in found]
                       + ["module defined twice: " + t for t in twice]))
    sources = []
    for folder in ("engine", "ui", "app"):
        sources += sources_under(os.path.join(root, folder), ".c")
    checks.append(("no function over %d lines in %d files" % (MAX_LINES, len(sources)),
                   long_functions(sources) if sources else ["no sources found"]))
    print("1..%d" % len(checks))
    failed = 0
    for n, (name, problems) in enumerate(checks, 1):
        if problems:
            failed += 1
            print("not ok %d - %s" % (n, name))
            for p in problems:
                print("# " + p)
        else:
            print("ok %d - %s" % (n, name))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
