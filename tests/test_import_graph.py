"""The package's shape: imports flow one way (no cycle, counting imports inside functions too),
a small top level, and no oversized source file.

The graph is read statically from the source (every ``import`` / ``from ... import`` anywhere in a
file, also inside functions and ``if TYPE_CHECKING:`` blocks), so a function-level import cannot
hide a cycle. Two graphs are checked: between modules, and between the package's top-level
components (a subpackage such as ``logitscope.engine`` counts as one node).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "logitscope"
MAX_TOP_LEVEL_MODULES = 12
MAX_LINES = 410  # "files under ~400 lines"


def modules() -> dict[str, Path]:
    """``{"logitscope.engine.run": path}``; a package is named by its ``__init__.py``."""
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports (anywhere in the file)."""
    mods = modules()

    def owner(name: str) -> str | None:  # the module a dotted name lives in
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        package = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [module] + [f"{module}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                r = owner(t) if t.startswith("logitscope") else None
                # a module importing its own package's __init__ (a re-export) is not a dependency
                if r and r != m and not (m.startswith(r + ".") and mods[r].name == "__init__.py"):
                    edges[m].add(r)
    return edges


def component_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between top-level components (``logitscope.lens.run`` → ``logitscope.lens``)."""
    comp = lambda m: ".".join(m.split(".")[:2])  # noqa: E731
    out: dict[str, set[str]] = {}
    for a, bs in edges.items():
        out.setdefault(comp(a), set())
        for b in bs:
            if comp(a) != comp(b):
                out[comp(a)].add(comp(b))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_graph_finds_a_cycle_hidden_in_a_function():
    """The checker itself: a cycle made only of function-level imports is still a cycle."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    edges = import_graph()
    assert "logitscope.engine.kernel" in edges["logitscope.engine.run"]  # module-level import seen
    assert "logitscope.lens.run" in edges["logitscope.scope"]  # an import inside a method is seen too


def test_no_import_cycle_between_modules():
    assert cycles(import_graph()) == []


def test_no_import_cycle_between_subpackages():
    assert cycles(component_graph(import_graph())) == []


def test_the_top_level_is_small():
    top = sorted(f.name for f in PACKAGE.glob("*.py") if f.name != "__init__.py")
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_source_file_is_oversized():
    sizes = {
        str(f.relative_to(PACKAGE)): len(f.read_text(encoding="utf-8").splitlines()) for f in PACKAGE.rglob("*.py")
    }
    assert {f: n for f, n in sizes.items() if n > MAX_LINES} == {}


def test_the_engine_does_not_import_what_sits_on_it():
    """engine/ and arch/ are the bottom layers: they import nothing above them."""
    above = ("lens", "diff", "attribute", "evaluate", "tuned", "jacobian", "scope", "loading", "cli", "serve", "render")
    graph = component_graph(import_graph())
    for low in ("logitscope.arch", "logitscope.engine"):
        assert not {c for c in graph.get(low, ()) if c.split(".")[1] in above}, low
