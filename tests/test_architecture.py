"""The package's shape: no import cycle, no module over 600 lines, layers that point one way.

Parsed with ``ast`` from ``src/sftscale`` (nothing of the package is imported). An edge
``a -> b`` is drawn for every import of ``b`` anywhere in ``a``: at module level, inside
functions, under ``if TYPE_CHECKING``, and ``importlib.import_module("...")`` with a constant
name or an f-string whose prefix is constant (``f"{__name__}.{_LAZY[name]}"`` takes the
values of a module-level dict literal ``_LAZY``; any other f-string takes every module under
the prefix). Importing ``a.b.c`` also runs the package ``a.b`` (and ``a``), so the edge goes
to each of those ancestors too, except the importer's own ancestors (already running).

Not handled: modules imported through entry points (the task registry's plugin discovery:
a registry that imports what registers itself is not a cycle), names built at run time in
other ways, ``__import__``, imports of modules outside ``sftscale``.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "sftscale"
MAX_LINES = 600
# the pipeline's layers: each may import those before it, never one after it
LAYERS = ("grid", "rundir", "plan", "study")
# downstream of the runner: they read run directories through rundir, never through the runner
DOWNSTREAM = ("fit", "report", "judge")
# below the pipeline: they import none of its layers
BELOW = ("io", "events", "paths", "provenance", "quiet", "config", "models", "data", "tasks",
         "train", "generation", "evaluation", "toyworld")


def module_files(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package."""
    out = {}
    for f in sorted((src / package).rglob("*.py")):
        parts = list(f.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _ancestors(mod: str) -> list[str]:
    parts = mod.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _dict_values(tree: ast.Module, name: str) -> list[str] | None:
    """String values of a module-level ``name = {...}`` dict literal (None if there is none)."""
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                vals = [v.value for v in node.value.values if isinstance(v, ast.Constant)]
                return [v for v in vals if isinstance(v, str)]
    return None


def _dynamic(call: ast.Call, mod: str, tree: ast.Module, modules: dict) -> list[str]:
    """Targets of ``importlib.import_module(...)`` / ``import_module(...)``."""
    fn = call.func
    name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
    if name != "import_module" or not call.args:
        return []
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if not isinstance(arg, ast.JoinedStr):
        return []
    prefix, rest = "", list(arg.values)
    while rest:
        v = rest[0]
        if isinstance(v, ast.Constant):
            prefix += str(v.value)
        elif isinstance(v.value, ast.Name) and v.value.id == "__name__":
            prefix += mod
        else:
            break
        rest.pop(0)
    if len(rest) == 1 and isinstance(rest[0].value, ast.Subscript) \
            and isinstance(rest[0].value.value, ast.Name):
        vals = _dict_values(tree, rest[0].value.value.id)
        if vals is not None:
            return [prefix + v for v in vals]
    return [m for m in modules if m.startswith(prefix) and m != prefix.rstrip(".")]


def _targets(node: ast.AST, mod: str, is_pkg: bool, modules: dict) -> list[str]:
    """Modules named by one import statement (before adding ancestor packages)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    out = [prefix]
    out += [f"{prefix}.{a.name}" for a in node.names if f"{prefix}.{a.name}" in modules]
    return out


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (see the module docstring)."""
    modules = module_files(src, package)
    graph: dict[str, set[str]] = {}
    for mod, f in modules.items():
        tree = ast.parse(f.read_text(), filename=str(f))
        is_pkg = f.name == "__init__.py"
        own = set(_ancestors(mod)) | {mod}
        edges: set[str] = set()
        for node in ast.walk(tree):
            found = _targets(node, mod, is_pkg, modules)
            if isinstance(node, ast.Call):
                found = _dynamic(node, mod, tree, modules)
            for t in found:
                for m in _ancestors(t) + [t]:
                    if m in modules and m not in own:
                        edges.add(m)
        graph[mod] = edges
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def shortest_cycle(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component."""
    start, inside = comp[0], set(comp)
    prev: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v] & inside):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return path[::-1] + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


def test_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 20 and "sftscale.models" in graph
    cycles = []
    for comp in strongly_connected(graph):
        cyc = shortest_cycle(graph, comp)
        more = f"  (one of the cycles among {', '.join(comp)})" if len(comp) > len(cyc) - 1 else ""
        cycles.append(" -> ".join(cyc) + more)
    for c in cycles:
        print("import cycle:", c)
    assert not cycles, "import cycles (counting imports inside functions):\n" + "\n".join(cycles)


def test_no_module_over_600_lines():
    long = {str(f.relative_to(SRC)): n for f in sorted(SRC.rglob("*.py"))
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    for f, n in long.items():
        print(f"{f}: {n} lines")
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def _top(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports against the layer order (``LAYERS``, ``DOWNSTREAM``, ``BELOW``)."""
    bad = []
    for mod, edges in sorted(graph.items()):
        src = _top(mod)
        for dst in sorted({_top(t) for t in edges}):
            if src in LAYERS and dst in LAYERS and LAYERS.index(dst) > LAYERS.index(src):
                bad.append(f"{mod} imports {dst} (a later layer)")
            elif src in DOWNSTREAM and dst in ("plan", "study"):
                bad.append(f"{mod} imports {dst} (read run directories through rundir)")
            elif src in BELOW and dst in LAYERS:
                bad.append(f"{mod} imports {dst} (a layer above it)")
    if graph.get(f"{PACKAGE}.rundir.layout"):
        bad.append("rundir.layout imports " + ", ".join(sorted(graph[f"{PACKAGE}.rundir.layout"])))
    return bad


def test_layers_point_one_way():
    """grid <- rundir <- plan <- study; fit and report depend on rundir, not on the runner."""
    planted = {"sftscale.rundir.store": {"sftscale.study.runner"},
               "sftscale.report.samples": {"sftscale.study", "sftscale.rundir.store"},
               "sftscale.train.cell": {"sftscale.grid.cells"},
               "sftscale.rundir.layout": {"sftscale.io"}}
    assert len(layer_violations(planted)) == 4  # the check sees each kind
    bad = layer_violations(import_graph())
    for b in bad:
        print(b)
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_graph_sees_function_level_and_ancestor_imports(tmp_path):
    pkg = tmp_path / "p"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from . import b\n")
    (pkg / "a" / "b.py").write_text("X = 1\n")
    (pkg / "a" / "c.py").write_text("from .b import X\n")
    (pkg / "d.py").write_text("def f():\n    from .a.c import X\n    import importlib\n"
                              "    importlib.import_module('p.e')\n")
    (pkg / "e.py").write_text("from p import d\n")
    g = import_graph(tmp_path, "p")
    assert g["p.a.c"] == {"p.a.b"}  # its own package p.a is already running
    assert g["p.d"] == {"p.a", "p.a.c", "p.e"}  # running p.a.c runs the package p.a
    assert g["p.a"] == {"p.a.b"} and g["p.e"] == {"p.d"}
    comps = strongly_connected(g)
    assert comps == [["p.d", "p.e"]]
    assert shortest_cycle(g, comps[0]) == ["p.d", "p.e", "p.d"]
