"""Hypothesis strategies that break a valid document one way: wrong type, out of range, misspelt or
missing key. Used on stack config namespaces and sandbox scenarios."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

Path_ = tuple[Any, ...]


def paths(doc: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every path to a value inside ``doc`` (dict keys and list indices)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield (*prefix, index)
            yield from paths(value, (*prefix, index))


def get(doc: Any, path: Path_) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def wrong_type(value: Any) -> list[Any]:
    """Values of other JSON types than ``value``'s."""
    if isinstance(value, bool):
        return ["yes please", [True], {"on": True}]
    if isinstance(value, int | float):
        return ["ten", [value], {"value": value}, None]
    if isinstance(value, str):
        return [[value], {"value": value}, 12345]
    if isinstance(value, list):
        return ["a,b", {"0": value}, 7]
    if isinstance(value, dict):
        return ["text", [value], 3]
    return ["text"]


OUT_OF_RANGE = [-1, -10_000, 10**9, 1e308, -0.5]


def misspell(key: str, how: int) -> str:
    """A typo of ``key``: a letter dropped, doubled, swapped, or a case change."""
    if len(key) < 2:
        return key + "x"
    i = how % (len(key) - 1)
    variants = [
        key[:i] + key[i + 1 :],
        key[:i] + key[i] + key[i:],
        key[:i] + key[i + 1] + key[i] + key[i + 2 :],
        key.upper() if key != key.upper() else key.lower(),
    ]
    return variants[how % len(variants)]


@st.composite
def mutated(draw: st.DrawFn, doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """One mutation of a deep copy of ``doc``: (description, mutated document)."""
    result = copy.deepcopy(doc)
    all_paths = list(paths(result))
    path = draw(st.sampled_from(all_paths))
    parent, last = get(result, path[:-1]), path[-1]
    kind = draw(st.sampled_from(["type", "range", "misspelt", "missing"]))
    if kind == "range" and not isinstance(parent[last], int | float):
        kind = "type"
    if kind in ("misspelt", "missing") and not isinstance(parent, dict):
        kind = "type"
    if kind == "type":
        parent[last] = draw(st.sampled_from(wrong_type(parent[last])))
    elif kind == "range":
        parent[last] = draw(st.sampled_from(OUT_OF_RANGE))
    elif kind == "missing":
        del parent[last]
    else:
        typo = misspell(str(last), draw(st.integers(0, 50)))
        if typo in parent:
            typo += "_"
        parent[typo] = parent.pop(last)
    return f"{kind} at {'.'.join(map(str, path))}", result
