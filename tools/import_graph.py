#!/usr/bin/env python3
"""Print the import graph of a package's modules and fail on a cycle.

    python tools/import_graph.py                      # rfs_deploy/drive: module -> what it imports
    python tools/import_graph.py --packages           # rfs_deploy's subpackages and top modules
    python tools/import_graph.py --forbid rfs_deploy.aws

Every ``import`` and ``from ... import`` statement counts, wherever it stands: at module level,
inside a function (a deferred import still ties the two modules together, it only hides the
tie), and under ``if TYPE_CHECKING:`` (the type checker follows it). ``--runtime`` leaves the
``TYPE_CHECKING`` imports out, to see what Python itself imports.

``from package import name`` is an import of ``package.name`` when that is a module, of
``package`` otherwise. Importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``;
those implicit imports of a module's own parent packages are not drawn (every submodule would
otherwise be in a cycle with a package ``__init__`` that imports it), which is why a package's
``__init__`` should import nothing of its own modules that they import back.

Output: one line per module, ``module -> imported, ...`` (names relative to the package graphed;
modules outside it in ``--external``), then the modules in an order where each comes after all it
imports. Exit status 1, naming each cycle, when the graph has one (or a ``--forbid`` import);
0 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = "rfs_deploy/drive"


@dataclass
class Graph:
    """Modules (dotted names) and the modules each imports."""

    edges: dict[str, set[str]] = field(default_factory=dict)
    #: Where each edge was seen: (importer, imported) -> ["path:line", ...].
    sites: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, source: str, target: str, site: str) -> None:
        self.edges.setdefault(source, set())
        if source != target:
            self.edges[source].add(target)
            self.sites.setdefault((source, target), []).append(site)


def module_files(package_dir: Path, base: Path) -> dict[str, Path]:
    """Every module under ``package_dir`` by dotted name (relative to ``base``, the directory
    holding the top package); a package is named by its ``__init__.py``."""
    found: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, runtime: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree``, at any depth (``runtime``: not under TYPE_CHECKING)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if runtime and isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(name: str, known: Iterable[str]) -> str | None:
    """``name`` or its longest prefix that is a known module; None when none is."""
    names = set(known)
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in names:
            return candidate
        parts.pop()
    return None


def imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names one statement imports (``from p import a`` gives ``p.a`` and ``p``'s
    fallback is decided by the caller against the known modules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = package[: len(package) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [f"{prefix}.{alias.name}" if alias.name != "*" else prefix for alias in node.names]


def build(package_dir: Path, base: Path, runtime: bool = False, universe: Path | None = None) -> Graph:
    """The import graph of the modules under ``package_dir``; targets are resolved against the
    modules under ``universe`` (default: the whole top package), anything else is left out."""
    modules = module_files(package_dir, base)
    top = base / next(iter(modules)).split(".")[0] if modules else package_dir
    known = module_files(universe or top, base)
    graph = Graph()
    for module, path in modules.items():
        graph.edges.setdefault(module, set())
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in _imports(tree, runtime):
            for name in imported_names(node, module, is_package):
                target = _resolve(name, known)
                if target is not None:
                    graph.add(module, target, f"{path.relative_to(base)}:{node.lineno}")
    return graph


def internal(graph: Graph, prefix: str) -> dict[str, set[str]]:
    """The edges among modules named ``prefix`` or ``prefix.*``."""

    def inside(name: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    return {m: {t for t in targets if inside(t)} for m, targets in graph.edges.items() if inside(m)}


def grouped(graph: Graph, top: str) -> tuple[dict[str, set[str]], dict[tuple[str, str], list[str]]]:
    """The graph between ``top``'s subpackages and top-level modules (``top.drive.plans.canary``
    counts as ``drive``); the sites of each edge."""

    def group(name: str) -> str:
        rest = name[len(top) + 1 :] if name.startswith(top + ".") else ""
        return rest.split(".")[0] if rest else top

    edges: dict[str, set[str]] = {}
    sites: dict[tuple[str, str], list[str]] = {}
    for (source, target), where in graph.sites.items():
        a, b = group(source), group(target)
        edges.setdefault(a, set())
        edges.setdefault(b, set())
        if a != b:
            edges[a].add(b)
            sites.setdefault((a, b), []).extend(where)
    for module in graph.edges:
        edges.setdefault(group(module), set())
    return edges, sites


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) through each strongly connected group of modules that has
    one (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                members: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == node:
                        break
                if len(members) > 1:
                    groups.append(sorted(members))
    return [_cycle_in(set(group), edges) for group in groups]


def groups_of(edges: dict[str, set[str]], module: str) -> list[str]:
    """The modules in a cycle with ``module`` (its strongly connected group), sorted."""

    def reach(start: str, forward: bool) -> set[str]:
        seen = {start}
        todo = [start]
        while todo:
            node = todo.pop()
            nexts = edges.get(node, set()) if forward else {m for m, t in edges.items() if node in t}
            for other in nexts - seen:
                seen.add(other)
                todo.append(other)
        return seen

    return sorted(reach(module, True) & reach(module, False))


def _cycle_in(group: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the group's first module (breadth-first, inside the group)."""
    start = min(group)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(edges.get(node, ())):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child in group and child not in previous and child != start:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError("a strongly connected group always holds a cycle")


def layers(edges: dict[str, set[str]]) -> list[list[str]]:
    """Modules in layers: each module's imports all lie in earlier layers (a DAG only)."""
    placed: dict[str, int] = {}
    remaining = set(edges)
    result: list[list[str]] = []
    while remaining:
        ready = sorted(m for m in remaining if all(t in placed for t in edges[m] if t in edges))
        if not ready:
            raise ValueError("the graph has a cycle")
        for m in ready:
            placed[m] = len(result)
        result.append(ready)
        remaining.difference_update(ready)
    return result


def _short(name: str, prefix: str) -> str:
    if name == prefix:
        return "__init__"
    return name[len(prefix) + 1 :] if name.startswith(prefix + ".") else name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Print a package's import graph; exit 1 naming a cycle (or a forbidden import).",
        epilog="Counted: every import statement, at module level, inside functions and under "
        "TYPE_CHECKING (--runtime leaves TYPE_CHECKING out). Implicit imports of a module's own "
        "parent packages are not drawn.",
    )
    parser.add_argument(
        "root", nargs="?", default=DEFAULT_ROOT, help=f"package directory (default {DEFAULT_ROOT})"
    )
    parser.add_argument(
        "--packages",
        action="store_true",
        help="graph the top package's subpackages and top-level modules instead of root's modules",
    )
    parser.add_argument("--external", action="store_true", help="also list imports from outside root")
    parser.add_argument("--runtime", action="store_true", help="leave out imports under TYPE_CHECKING")
    parser.add_argument(
        "--forbid",
        action="append",
        default=[],
        metavar="MODULE",
        help="fail when a module of root imports MODULE or anything under it (repeatable)",
    )
    args = parser.parse_args(argv)

    root = (REPO / args.root).resolve() if not Path(args.root).is_absolute() else Path(args.root)
    if not (root / "__init__.py").is_file() and not any(root.glob("*.py")):
        parser.error(f"{args.root}: no Python package there")
    base = root
    while (base / "__init__.py").is_file() or base == root:
        base = base.parent
    prefix = ".".join(root.relative_to(base).parts)
    top = prefix.split(".")[0]

    if args.packages:
        graph = build(base / top, base, runtime=args.runtime)
        edges, sites = grouped(graph, top)
        label = f"{top} (subpackages and top-level modules)"
        show = lambda name: name  # noqa: E731
    else:
        graph = build(root, base, runtime=args.runtime)
        edges = internal(graph, prefix)
        sites = graph.sites
        label = prefix
        show = lambda name: _short(name, prefix)  # noqa: E731

    print(f"# import graph of {label}")
    for module in sorted(edges):
        targets = ", ".join(show(t) for t in sorted(edges[module])) or "-"
        print(f"{show(module)} -> {targets}")
        if args.external and not args.packages:
            outside = sorted(t for t in graph.edges[module] if t not in edges)
            if outside:
                print(f"    outside: {', '.join(outside)}")

    failed = False
    found = cycles(edges)
    for cycle in found:
        failed = True
        steps = [f"{show(a)} -> {show(b)} ({sites[(a, b)][0]})" for a, b in itertools.pairwise(cycle)]
        print(f"import cycle: {' -> '.join(show(m) for m in cycle)}", file=sys.stderr)
        group = groups_of(edges, cycle[0])
        if len(group) > len(cycle) - 1:
            print(f"    (all in one cycle group: {', '.join(show(m) for m in group)})", file=sys.stderr)
        for step in steps:
            print(f"    {step}", file=sys.stderr)
    for forbidden in args.forbid:
        for (source, target), where in sorted(graph.sites.items()):
            inside = source == prefix or source.startswith(prefix + ".")
            if inside and (target == forbidden or target.startswith(forbidden + ".")):
                failed = True
                print(f"forbidden import: {source} imports {target} ({where[0]})", file=sys.stderr)
    if not found:
        print("# order (each line imports only from lines above it)")
        for number, layer in enumerate(layers(edges)):
            print(f"{number}: {' '.join(show(m) for m in layer)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
