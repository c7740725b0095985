#!/usr/bin/env python3
"""Checks that the modules of every crate import each other one way (no cycles).

    python3 scripts/import_cycles.py            # every crate under crates/
    python3 scripts/import_cycles.py crates/model

A module's imports are the `crate::…`, `super::…` and `self::…` paths in its code outside
comments and `#[cfg(test)]` sections; `crate::Name` re-exported by lib.rs counts as the module
that defines it. Prints each cycle (a strongly connected set of modules) and exits 1 if any.
"""
import os
import re
import sys


def modules(src_dir):
    mods = {}
    for dirpath, _, files in os.walk(src_dir):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            name = os.path.relpath(path, src_dir)[:-3].replace(os.sep, "::")
            name = re.sub(r"(^|::)mod$", "", name)
            if name in ("lib", "main"):
                name = "crate"
            mods[name] = open(path, encoding="utf-8").read()
    return mods


def graph(mods):
    reexport = {}
    for m in re.finditer(r"pub use (\w+)::\{?([^;]*?)\}?;", mods.get("crate", "")):
        for item in re.findall(r"\w+", m.group(2)):
            reexport[item] = m.group(1)

    def resolve(here, path):
        parts = path.split("::")
        if parts[0] == "crate":
            if len(parts) > 1 and parts[1] in reexport and parts[1] not in mods:
                parts = [reexport[parts[1]]] + parts[2:]
            else:
                parts = parts[1:]
            base = []
        elif parts[0] == "super":
            base, parts = here.split("::")[:-1], parts[1:]
        else:
            base, parts = here.split("::"), parts[1:]
        cand = base + parts
        while cand:
            if "::".join(cand) in mods:
                return "::".join(cand)
            cand = cand[:-1]
        return None

    g = {m: set() for m in mods}
    for here, src in mods.items():
        src = src.split("#[cfg(test)]")[0]
        src = re.sub(r"//[^\n]*", "", src)
        paths = re.findall(r"\b((?:crate|super|self)::\w+(?:::\w+)*)", src)
        for group in re.findall(r"\buse\s+crate::\{([^}]*)\}", src):
            paths += ["crate::" + item for item in re.findall(r"\w+", group)]
        for p in paths:
            t = resolve(here, p)
            if t and t != here and t != "crate" and not here.startswith(t + "::"):
                g[here].add(t)
    return g


def cycles(g):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    crates = sys.argv[1:] or sorted(
        os.path.join(root, "crates", c) for c in os.listdir(os.path.join(root, "crates"))
    )
    bad = False
    for crate in crates:
        found = cycles(graph(modules(os.path.join(crate, "src"))))
        name = os.path.basename(os.path.normpath(crate))
        for c in found:
            bad = True
            print(f"{name}: modules import each other in a circle: {', '.join(c)}")
    if not bad:
        print(f"imports run one way in {len(crates)} crates")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
