"""Parsing the project's own source in tests, robust to a CPython 3.11 fault.

CPython 3.11 keeps the AST constructor's recursion depth in state that another thread building
an AST at the same moment (an import compiling a module in a thread a previous test left
running) can disturb: ``ast.parse`` then raises ``SystemError: AST constructor recursion depth
mismatch`` for valid source (python/cpython#106905). The source is fine, so parse again.
"""

from __future__ import annotations

import ast
from pathlib import Path

ATTEMPTS = 5


def parse_file(path: Path) -> ast.Module:
    text = path.read_text()
    for attempt in range(ATTEMPTS):
        try:
            return ast.parse(text, filename=str(path))
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
