#!/usr/bin/env python3
"""Fails when a source file includes a header from a layer above its own, or when modules include
each other: dependencies point down only (docs/design.md, "Source layout"). The layers, top to bottom,
are the folders of src/."""
import os
import re
import sys

LAYERS = ["daemon", "front", "cache", "redis", "base"]
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# Upward includes allowed: none. (Should one ever be needed for a while, list it here as
# ("layer/file", "layer/header"); an entry that no longer occurs fails too, so the list can only
# shrink.)
KNOWN = set()


def module_of(name):
    """A module is a header and its sources: x.h, x.cc, and x_state.h, x_internal.h beside them."""
    base = os.path.splitext(name)[0]
    for suffix in ("_state", "_internal"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def module_cycles(files):
    """Modules that include each other, directly or through others: a knot, not layers."""
    edges = {}
    for layer, name in files:
        with open(os.path.join(ROOT, "src", layer, name)) as f:
            targets = {module_of(t) for t in re.findall(r'#include "([^"]+)"', f.read())}
        edges.setdefault(module_of(name), set()).update(targets - {module_of(name)})
    problems = []
    state = {}  # module -> 1 on the path, 2 done

    def visit(module, path):
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                problems.append("modules include each other: " + " -> ".join(cycle))
            elif target in edges and target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    return problems


def main():
    home = {}  # header name -> "layer/name"
    files = []
    for layer in LAYERS:
        for name in sorted(os.listdir(os.path.join(ROOT, "src", layer))):
            files.append((layer, name))
            if name.endswith(".h"):
                home[name] = "%s/%s" % (layer, name)
    found, problems = set(), []
    for layer, name in files:
        with open(os.path.join(ROOT, "src", layer, name)) as f:
            for number, line in enumerate(f, 1):
                m = re.match(r'#include "([^"]+)"', line)
                if not m:
                    continue
                target = home.get(m.group(1))
                if target is None:
                    problems.append("src/%s/%s:%d: includes %s, which is in no layer" % (layer, name, number, m.group(1)))
                    continue
                if LAYERS.index(target.split("/")[0]) < LAYERS.index(layer):
                    edge = ("%s/%s" % (layer, name), target)
                    found.add(edge)
                    if edge not in KNOWN:
                        problems.append("src/%s/%s:%d: includes %s, from a layer above (%s)"
                                        % (layer, name, number, m.group(1), target.split("/")[0]))
    problems += module_cycles(files)
    for edge in sorted(KNOWN - found):
        problems.append("tests/check_layers.py: %s no longer includes %s: remove it from KNOWN" % edge)
    for p in problems:
        print(p, file=sys.stderr)
    print("layers: %d files, %d upward includes%s"
          % (len(files), len(found), "" if not problems else ", %d problem(s)" % len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
