#!/usr/bin/env python3
"""Finds import circles between the modules of each crate in the workspace.

A module depends on another when its non-test code names it (`crate::m`, `use
crate::{m, ..}`, or `m::` for a sibling module). Prints every strongly connected group
of more than one module and exits 1 if there is any.
"""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_of(path):
    """The file's non-test code without comments (doc comments name modules too)."""
    text = open(path).read().split("#[cfg(test)]")[0]
    return re.sub(r"//[^\n]*", "", text)


def graph(src):
    mods = {os.path.basename(f)[:-3]: f for f in glob.glob(os.path.join(src, "*.rs"))}
    edges = {}
    for m, f in mods.items():
        text = code_of(f)
        deps = set(re.findall(r"crate::(\w+)", text))
        for group in re.findall(r"use crate::\{([^}]*)\}", text):
            deps |= set(re.findall(r"(\w+)", group))
        deps |= {x for x in re.findall(r"(?<![\w:])(\w+)::", text) if x in mods}
        edges[m] = {d for d in deps if d in mods and d != m and d not in ("lib", "main")}
    return edges


def circles(edges):
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def folder_graph(folder):
    """A module folder (`m/mod.rs` and `m/*.rs`): `mod` is the parent module; a child
    naming `super::x` depends on its sibling `x`, or on the parent for anything else."""
    mods = {os.path.basename(f)[:-3]: f for f in glob.glob(os.path.join(folder, "*.rs"))}
    edges = {}
    for m, f in mods.items():
        text = code_of(f)
        deps = set()
        if m == "mod":
            deps |= {x for x in re.findall(r"(?<![\w:])(\w+)::", text) if x in mods}
        else:
            for x in re.findall(r"super::(\w+)", text):
                deps.add(x if x in mods else "mod")
            deps |= {x for x in re.findall(r"(?<![\w:])(\w+)::", text) if x in mods}
        edges[m] = {d for d in deps if d != m}
    return edges


bad = 0
for manifest in sorted(glob.glob(os.path.join(ROOT, "*", "Cargo.toml"))):
    src = os.path.join(os.path.dirname(manifest), "src")
    if not os.path.isdir(src):
        continue
    crate = os.path.basename(os.path.dirname(manifest))
    for group in circles(graph(src)):
        print(f"{crate}: import circle {' <-> '.join(group)}")
        bad += 1
    for mod_rs in sorted(glob.glob(os.path.join(src, "*", "mod.rs"))):
        folder = os.path.dirname(mod_rs)
        for group in circles(folder_graph(folder)):
            name = os.path.basename(folder)
            print(f"{crate}: import circle in {name}/: {' <-> '.join(group)}")
            bad += 1
print(f"import circles: {bad}")
sys.exit(1 if bad else 0)
