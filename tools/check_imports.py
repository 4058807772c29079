"""Dependencies point one way: ``make lint`` fails on an import cycle or an import from the core into an edge.

The core is ``functions/archiver``; the edges are ``functions/handlers`` (the Lambda entry points)
and ``functions/local`` (CLI, local API server, local runner, demo data, embedded server). Edges
import the core; the core imports no edge; the Lambda handlers import nothing of the local edge
(it is not in the Lambda asset). Every import counts, also one inside a function or under
``TYPE_CHECKING``: a lazy import is still a dependency.

Usage: ``python tools/check_imports.py [functions_dir]``; prints each offending import, exits 1 if any.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

CORE = "archiver"
EDGES = ("handlers", "local")
# What each package may import, besides itself and third-party code.
ALLOWED_LAYERS: dict[str, set[str]] = {
    CORE: set(),
    "handlers": {CORE},
    "local": {CORE, "handlers"},
}
Graph = Mapping[str, set[str]]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom | ast.Import, known: set[str]) -> set[str]:
    """The first-party modules ``node`` imports (``from . import x`` names module ``x`` when it is one)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name.split(".")[0] in ALLOWED_LAYERS}
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    if base.split(".")[0] not in ALLOWED_LAYERS:
        return set()
    targets = set()
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        targets.add(candidate if candidate in known else base)
    return targets


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the first-party modules it imports, for every package under ``root``."""
    files = {_module_name(p, root): p for package in ALLOWED_LAYERS for p in (root / package).rglob("*.py")}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                imported |= _resolve(module, path.name == "__init__.py", node, known)
        graph[module] = imported - {module}
    return graph


def layer_violations(graph: Graph) -> list[str]:
    """Imports that point the wrong way (core → edge, handlers → local)."""
    found = []
    for module, targets in sorted(graph.items()):
        layer = module.split(".")[0]
        for target in sorted(targets):
            target_layer = target.split(".")[0]
            if target_layer != layer and target_layer not in ALLOWED_LAYERS[layer]:
                found.append(f"{module} -> {target}: {layer} must not import {target_layer}")
    return found


def cycles(graph: Graph) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return components


def cycle_violations(graph: Graph) -> list[str]:
    found = []
    for component in cycles(graph):
        edges = sorted(f"{a} -> {b}" for a in component for b in graph.get(a, ()) if b in component)
        found.append(f"import cycle among {', '.join(sorted(component))}: {'; '.join(edges)}")
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "functions"
    graph = import_graph(root)
    problems = layer_violations(graph) + cycle_violations(graph)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
