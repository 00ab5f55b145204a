"""The one YAML reader for user files (stack files, sandbox scenarios): bounded, plain data only.

``yaml.safe_load`` builds no Python objects, but it still takes whatever a file holds: an alias
bomb (a few lines of ``&a`` / ``*a`` that stand for millions of values once written out as JSON),
nesting deep enough to exhaust Python's recursion limit, a file of any size, and values JSON has no
spelling for (``!!binary``, ``!!set``, unquoted dates, ``.nan``). Both kinds of file end up as JSON
(stack config, a sandbox session), so this reader refuses all of that up front:

- at most :data:`MAX_BYTES` of UTF-8 text (a byte-order mark is allowed);
- one document; no aliases (``*name``; anchors alone are harmless); no duplicate keys;
- nesting at most :data:`MAX_DEPTH` deep;
- and :func:`first_non_json` names the first value JSON cannot carry (the caller decides how
  to report it, naming the key).

Every refusal is a :class:`YamlRefused` whose message is one line.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode

#: Largest file read (1 MiB): a stack file or a scenario is a few kilobytes.
MAX_BYTES = 1 << 20
#: Deepest nesting of mappings and lists (the stack model needs about eight levels).
MAX_DEPTH = 64


class YamlRefused(ValueError):
    """A YAML text this reader does not accept; the message is one line."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader without aliases, with a depth limit and no duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise YamlRefused(f"YAML aliases (*{event.anchor}) are not accepted{_where(event.start_mark)}")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlRefused(
                    f"nested deeper than {MAX_DEPTH} levels{_where(self.peek_event().start_mark)}"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, MappingNode):
            seen: set[tuple[str, str]] = set()
            for key_node, _ in node.value:
                if isinstance(key_node.value, str):
                    key = (key_node.tag, key_node.value)
                    if key in seen:
                        raise YamlRefused(f"duplicate key {key_node.value!r}{_where(key_node.start_mark)}")
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _where(mark: Any) -> str:
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


def problem(exc: yaml.YAMLError) -> str:
    """What a parser error says is wrong, and where (one line)."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    what = getattr(exc, "problem", None) or first
    mark = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context", None)
    return " ".join(f"{what}{_where(mark)}".split()) + (f" ({' '.join(context.split())})" if context else "")


def parse(text: str | bytes) -> Any:
    """The data of one YAML document (None for an empty one); YamlRefused when it is refused."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise YamlRefused(f"larger than {MAX_BYTES / 2**20:g} MiB")
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise YamlRefused(
                f"not UTF-8 text (byte 0x{text[exc.start]:02x} at offset {exc.start})"
            ) from None
    elif len(text) > MAX_BYTES:
        raise YamlRefused(f"larger than {MAX_BYTES / 2**20:g} MiB")
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the reader refuses control characters already here
        return loader.get_single_data()
    except YamlRefused:
        raise
    except yaml.YAMLError as exc:
        raise YamlRefused(f"not valid YAML: {problem(exc)}") from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # a scalar the constructor cannot build (an integer of thousands of digits, a date
        # like 2024-02-30)
        raise YamlRefused(f"not valid YAML: {' '.join(str(exc).split())[:200]}") from None
    finally:
        if loader is not None:
            loader.dispose()


def read(path: str | Path) -> Any:
    """:func:`parse` of a file, read without following it past :data:`MAX_BYTES`.

    OSError when it cannot be read; YamlRefused when it is no regular file, too large, or refused."""
    return parse(read_bytes(path))


def read_bytes(path: str | Path) -> bytes:
    """Up to :data:`MAX_BYTES` + 1 bytes of the regular file at ``path``. Opened non-blocking,
    so a FIFO (or a device) in its place is refused (YamlRefused) instead of hanging the
    command; OSError when it cannot be opened."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise YamlRefused("not a regular file")
        return handle.read(MAX_BYTES + 1)


_PLAIN_KEY = re.compile(r"[!-~]{1,64}")


def safe_key(part: str) -> str:
    """One part of a key path for an error line: as written when it is short printable text,
    else its repr cut short (a key is user data: it may hold a newline, or 10 KB of text)."""
    if _PLAIN_KEY.fullmatch(part):
        return part
    text = repr(part)
    return text if len(text) <= 40 else text[:37] + "..."


def first_non_json(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first place in ``value`` JSON cannot carry, as (dotted path, what is there), else None.

    Mappings need string keys; numbers must be finite; text, booleans, null and lists pass."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if item is None or isinstance(item, bool | int | str):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return where, f"{item} is not a number JSON can carry (NaN and infinity are refused)"
            continue
        if isinstance(item, dict):
            children = []
            for key, child in item.items():
                if not isinstance(key, str):
                    return where, f"the key {key!r} is not text ({_kind(key)}); quote it"
                children.append((f"{where}.{safe_key(key)}" if where else safe_key(key), child))
            stack.extend(reversed(children))
            continue
        if isinstance(item, list):
            stack.extend(reversed([(f"{where}[{i}]", child) for i, child in enumerate(item)]))
            continue
        return where, f"{_kind(item)} is not a JSON value; quote it if it is meant as text"
    return None


def _kind(value: Any) -> str:
    if isinstance(value, bytes):
        return "a !!binary value"
    if isinstance(value, set | frozenset):
        return "a !!set"
    if isinstance(value, datetime.datetime | datetime.date):
        return "a date or timestamp"
    if isinstance(value, tuple):
        return "an ordered mapping (!!omap / !!pairs)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"
