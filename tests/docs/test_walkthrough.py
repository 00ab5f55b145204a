"""The README's five-minute walk-through in the sandbox runs as printed.

Every command of its first sandbox block (reset, up, plan, deploy, status, history, rollback) runs
in a fresh state directory, in order, as a new process, and must exit 0. The second block's bad
releases (``simulate`` under a scenario, exit 3) are what tests/cli/test_cli_exit_codes.py runs;
here they only have to be commands the parser accepts.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from rfs_deploy.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SANDBOX = README[README.index("### In the sandbox") : README.index("### Against AWS")]
BLOCKS = re.findall(r"```sh\n(.*?)```", SANDBOX, re.S)


def commands(block: str) -> list[list[str]]:
    """Each ``.venv/bin/rfs-deploy`` line as the same program under this interpreter."""
    found = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == ".venv/bin/rfs-deploy":
            found.append([sys.executable, "-m", "rfs_deploy", *words[1:]])
    return found


def run_all(block: str, state: Path, cwd: Path) -> list[tuple[str, int, str]]:
    env = {**os.environ, "RFS_DEPLOY_STATE": str(state), "RFS_DEPLOY_PROJECT": str(ROOT)}
    for name, value in re.findall(r"^export (\w+)=(\S+)$", block, re.M):
        env[name] = value
    results = []
    for argv in commands(block):
        run = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        results.append((" ".join(argv[3:]), run.returncode, run.stderr[-2000:]))
    return results


def test_the_walkthrough_blocks_are_found() -> None:
    assert len(BLOCKS) == 3
    assert "export RFS_DEPLOY_BACKEND=sim" in BLOCKS[0]
    assert [c[3] for c in commands(BLOCKS[0])] == [
        "sandbox-reset",
        "up",
        "plan",
        "deploy",
        "status",
        "history",
        "rollback",
    ]
    assert [c[3] for c in commands(BLOCKS[1])] == ["simulate", "simulate"]
    assert [c[3] for c in commands(BLOCKS[2])] == ["deploy", "status", "promote", "wait"]


def test_the_sandbox_walkthrough_runs_as_printed(tmp_path: Path) -> None:
    results = run_all(BLOCKS[0], tmp_path / "state", tmp_path)
    failed = [(command, code, err) for command, code, err in results if code != 0]
    assert not failed, failed
    assert len(results) == 7


def test_the_bad_release_commands_parse() -> None:
    for argv in commands(BLOCKS[1]):
        args = build_parser().parse_args(argv[3:])
        assert args.command == "simulate" and args.scenario in ("error-spike", "latency-regression")


def test_the_gate_walkthrough_pauses_and_promotes_as_printed(tmp_path: Path) -> None:
    """The gate block after the walk-through's set-up (reset, up): the deploy exits 5 at the gate,
    status says PAUSED, promote completes it and wait reports that at once."""
    setup = "\n".join(line for line in BLOCKS[0].splitlines() if "sandbox-reset" in line or " up " in line)
    env_lines = "\n".join(re.findall(r"^export .*$", BLOCKS[0], re.M))
    assert len(run_all(f"{env_lines}\n{setup}", tmp_path / "state", tmp_path)) == 2
    results = run_all(f"{env_lines}\n{BLOCKS[2]}", tmp_path / "state", tmp_path)
    assert [code for _, code, _ in results] == [5, 0, 0, 0], results
