"""docs/cli.md documents every subcommand and option of the argument parser, and nothing else.

The parser (rfs_deploy.cli.build_parser) is the single source of truth; each subcommand has a
section ``### `rfs-deploy NAME` `` whose table names each of its options (and each choice of an
option with choices), so a new option, subcommand or strategy without documentation fails here.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from rfs_deploy.cli import build_parser

DOC = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
PARSER = build_parser()
SUBCOMMANDS: dict[str, argparse.ArgumentParser] = next(
    a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)
).choices
#: Flags every subcommand takes; documented once, under "Global flags".
GLOBAL = {"-h", "--help", "--backend", "--json", "--quiet", "--debug", "--project"}


def section(heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = DOC.index(heading + "\n") + len(heading)
    end = re.compile(rf"^#{{1,{len(level)}}} ", re.M).search(DOC, start)
    return DOC[start : end.start()] if end else DOC[start:]


def documented_options(text: str) -> set[str]:
    """The options in the first cell of each table row: `--stack S` -> --stack."""
    return set(re.findall(r"^\| `(--[a-z][a-z-]*)", text, re.M))


def own_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction) and not GLOBAL & set(a.option_strings)
    ]


def test_every_subcommand_has_a_section_and_no_section_is_extra() -> None:
    sections = set(re.findall(r"^### `rfs-deploy ([a-z-]+)`$", DOC, re.M))
    missing, extra = sorted(set(SUBCOMMANDS) - sections), sorted(sections - set(SUBCOMMANDS))
    assert not missing and not extra, f"undocumented: {missing}, not a subcommand: {extra}"


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_option_and_choice_of_a_subcommand_is_documented(name: str) -> None:
    text = section(f"### `rfs-deploy {name}`")
    for action in own_actions(SUBCOMMANDS[name]):
        if action.option_strings:
            for option in action.option_strings:
                row = rf"^\| `{re.escape(option)}[` ]"
                assert re.search(row, text, re.M), f"{name}: {option} not documented"
        else:
            shown = (action.metavar or action.dest).upper()
            assert f"| `{shown}` |" in text, f"{name}: positional {shown} not documented"
        for choice in action.choices or ():
            assert f"`{choice}`" in text, f"{name} {action.option_strings}: choice {choice!r} not documented"


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_no_documented_option_is_missing_from_the_parser(name: str) -> None:
    text = section(f"### `rfs-deploy {name}`")
    accepted = {o for a in own_actions(SUBCOMMANDS[name]) for o in a.option_strings}
    assert documented_options(text) <= accepted, f"{name}: {sorted(documented_options(text) - accepted)}"


def test_the_global_flags_and_their_choices_are_documented() -> None:
    text = section("## Global flags")
    top = [a for a in PARSER._actions if not isinstance(a, argparse._SubParsersAction)]
    for action in top:
        for option in action.option_strings:
            if option.startswith("--"):
                assert f"| `{option}` |" in text, f"global flag {option} not documented"
        for choice in action.choices or ():
            assert f"`{choice}`" in text, f"{action.option_strings}: choice {choice!r} not documented"
    # every subcommand takes the same global flags, so one table documents them all
    for name, sub in SUBCOMMANDS.items():
        flags = {o for a in sub._actions for o in a.option_strings} & GLOBAL
        assert flags == GLOBAL, f"{name} lacks global flags {sorted(GLOBAL - flags)}"
