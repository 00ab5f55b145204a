"""drive/'s imports form a DAG, and tools/import_graph.py (which CI runs through this test) says so.

Every import counts: at module level, inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "import_graph.py"

#: Cycles between rfs_deploy's subpackages and top-level modules that are still there, each as
#: the group of names in it. A group may shrink or go; a new cycle, or one that grows, fails.
#: sim -> connect: the sandbox opens its seams; seed_support -> deployment/strategies: the RFS
#: Framework's seed entry points. drive/ is in none.
KNOWN_PACKAGE_CYCLES = (
    {"connect", "sim"},
    {"deployment", "seed_support", "strategies"},
)


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module
    spec.loader.exec_module(module)
    return module


def script(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_drive_has_no_import_cycle() -> None:
    done = script()
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "# import graph of rfs_deploy.drive"
    assert "runner -> " in done.stdout and "# order (each line imports only from lines above it)" in lines
    # the untied modules: outcome types at the bottom, the driver on top
    graph = dict(line.split(" -> ") for line in lines[1:] if " -> " in line)
    assert graph["outcomes"] == "-"
    for module in ("analysis", "validate_step", "rollback", "stack"):
        assert "runner" not in graph[module].split(", "), module
    assert lines[-1].endswith(": driver")


def test_the_package_map_lists_every_module_below_what_imports_it() -> None:
    """drive/__init__.py's map: every module of drive/, each line importing only lines below."""
    import rfs_deploy.drive as drive

    doc = drive.__doc__ or ""
    listed = [line.split()[0] for line in doc.splitlines() if line.startswith("    ") and line.strip()]
    graph = tool()
    found = graph.build(REPO / "rfs_deploy" / "drive", REPO)
    edges = graph.internal(found, "rfs_deploy.drive")

    def top(name: str) -> str:  # plans.canary is listed as plans
        return name.removeprefix("rfs_deploy.drive.").split(".")[0]

    modules = {top(m) for m in edges if m != "rfs_deploy.drive"}
    assert sorted(listed) == sorted(modules)
    position = {name: n for n, name in enumerate(listed)}
    for module, targets in edges.items():
        if module == "rfs_deploy.drive":
            continue
        for target in targets:
            if top(target) != top(module):
                assert position[top(target)] > position[top(module)], f"{module} imports {target}"


def test_drive_imports_nothing_of_the_aws_package() -> None:
    done = script("--forbid", "rfs_deploy.aws")
    assert done.returncode == 0, done.stderr
    assert "forbidden import" not in done.stderr


def test_package_cycles_are_only_the_known_ones() -> None:
    graph = tool()
    found = graph.build(REPO / "rfs_deploy", REPO)
    edges, _ = graph.grouped(found, "rfs_deploy")
    groups = [set(graph.groups_of(edges, cycle[0])) for cycle in graph.cycles(edges)]
    for group in groups:
        assert any(group <= known for known in KNOWN_PACKAGE_CYCLES), f"new package cycle: {sorted(group)}"
        assert "drive" not in group


@pytest.fixture
def tangled(tmp_path: Path) -> Path:
    """A package whose two modules import each other: one inside a function, one only for types."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""A package."""\n')
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n\n    return b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg.a import f\n"
    )
    (pkg / "c.py").write_text("from . import a\nimport pkg.b\n")
    return pkg


def test_a_cycle_is_named_with_where_each_import_is(tangled: Path) -> None:
    done = script(str(tangled))
    assert done.returncode == 1
    assert "import cycle: a -> b -> a" in done.stderr
    assert "a -> b (pkg/a.py:2)" in done.stderr
    assert "b -> a (pkg/b.py:4)" in done.stderr
    assert "c -> a, b" in done.stdout  # a relative import and a dotted one
    assert "# order" not in done.stdout


def test_runtime_leaves_type_checking_imports_out(tangled: Path) -> None:
    done = script(str(tangled), "--runtime")
    assert done.returncode == 0, done.stderr
    assert "b -> -" in done.stdout
    assert done.stdout.endswith("0: __init__ b\n1: a\n2: c\n")


def test_a_forbidden_import_fails(tangled: Path) -> None:
    done = script(str(tangled), "--runtime", "--forbid", "pkg.b")
    assert done.returncode == 1
    assert "forbidden import: pkg.a imports pkg.b (pkg/a.py:2)" in done.stderr
    assert "forbidden import: pkg.c imports pkg.b (pkg/c.py:2)" in done.stderr
