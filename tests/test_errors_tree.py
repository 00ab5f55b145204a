"""The exception tree drawn in rfs_deploy/errors.py is the one the package defines."""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from pathlib import Path

import rfs_deploy
from rfs_deploy import errors
from rfs_deploy.errors import RfsDeployError

#: A line of the drawing: the branch glyphs, a class name, and what it says about the class.
LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+)\s+(?P<text>.+)$")


class Drawn:
    def __init__(self, name: str, parent: str | None, text: str) -> None:
        self.name, self.parent, self.text = name, parent, text


def drawing() -> dict[str, Drawn]:
    """The classes in errors.py's docstring: each with its parent (by indentation) and its text."""
    assert errors.__doc__ is not None
    drawn: dict[str, Drawn] = {}
    parents: list[str] = []  # parents[d] is the class last seen at depth d
    for line in errors.__doc__.splitlines():
        if not line.startswith("    ") or not line.strip():
            continue
        found = LINE.match(line[4:])
        assert found is not None, f"not a line of the tree: {line!r}"
        depth = len(found["indent"]) // 4
        assert depth <= len(parents), f"{found['name']} is drawn below nothing"
        del parents[depth:]
        parent = parents[-1] if parents else None
        assert found["name"] not in drawn, f"{found['name']} is drawn twice"
        drawn[found["name"]] = Drawn(found["name"], parent, found["text"])
        parents.append(found["name"])
    return drawn


def real_tree() -> dict[str, type[RfsDeployError]]:
    """Every subclass of RfsDeployError that a module of the package defines (all imported)."""
    for module in pkgutil.walk_packages(rfs_deploy.__path__, "rfs_deploy."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: dict[str, type[RfsDeployError]] = {}
    todo: list[type[RfsDeployError]] = [RfsDeployError]
    while todo:
        cls = todo.pop()
        if cls.__module__.split(".")[0] == "rfs_deploy":
            assert cls.__name__ not in found, f"two exception classes named {cls.__name__}"
            found[cls.__name__] = cls
        todo += cls.__subclasses__()
    return found


def source_path(cls: type) -> str:
    """``drive/cancel.py`` for a class of rfs_deploy.drive.cancel."""
    root = Path(rfs_deploy.__file__).parent
    return Path(sys.modules[cls.__module__].__file__ or "").relative_to(root).as_posix()


def test_every_class_of_the_tree_is_drawn_under_its_parent() -> None:
    drawn, real = drawing(), real_tree()
    assert set(drawn) == set(real)
    for name, cls in real.items():
        bases = [b.__name__ for b in cls.__bases__ if issubclass(b, RfsDeployError)]
        parent = drawn[name].parent
        assert bases == ([parent] if parent else []), f"{name} is drawn under {parent}, defined under {bases}"


def test_the_drawing_names_where_each_class_outside_errors_py_lives() -> None:
    drawn, real = drawing(), real_tree()
    for name in set(drawn) & set(real):
        cls, text = real[name], drawn[name].text
        if cls.__module__ == errors.__name__:
            assert ".py)" not in text, f"{name} is defined in errors.py"
        else:
            assert f"({source_path(cls)})" in text, f"{name} lives in {source_path(cls)}"


def test_the_exit_codes_drawn_are_the_classes_exit_codes() -> None:
    real = real_tree()
    for name, drawn in drawing().items():
        said = re.search(r"\bexit (\d+)\b(?!\+)", drawn.text)
        if said is not None and name in real:
            assert real[name].exit_code == int(said[1]), f"{name} exits {real[name].exit_code}"
