"""Every subcommand answers ``--help``; the installed ``rfs-deploy`` script is the same program."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from rfs_deploy.cli import build_parser, main


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


def test_the_documented_subcommands_exist() -> None:
    assert set(subcommands()) >= {
        "deploy",
        "plan",
        "up",
        "rollback",
        "resume",
        "abort",
        "status",
        "history",
        "simulate",
    }


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: rfs-deploy {command}")
    assert "--help" in out


def test_the_console_script_prints_help(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("rfs-deploy")
    assert script.is_file(), "the project is installed with its console script"
    done = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in subcommands():
        assert command in done.stdout
    assert "--backend" in done.stdout and "--json" in done.stdout


def test_no_subcommand_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([])
    assert stopped.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("rfs-deploy: error: ")
