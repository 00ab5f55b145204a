"""Sandbox sessions outlive the process that made them, whatever else that process did first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from e2e_world import STACK

from rfs_deploy.connect import open_seams

CLI = "import sys; from rfs_deploy.cli import main; sys.exit(main())"


def test_a_session_made_after_another_sandbox_reopens_in_a_new_process(tmp_path: Path) -> None:
    # moto builds its EC2 backend lazily; the network ids of a session must not depend on
    # whether this process had already run a sandbox (it had: the first one below)
    for _ in range(2):
        open_seams(STACK, backend="sim", scenario="healthy", fresh=True).close()
    env = {**os.environ, "RFS_DEPLOY_BACKEND": "sim"}
    done = subprocess.run(
        [sys.executable, "-c", CLI, "--json", "history", "--stack", STACK],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    history = json.loads(done.stdout)["stack_history"]
    assert [(e["version"], e["result"]) for e in history] == [(1, "succeeded")]


def test_a_session_that_cannot_be_restored_is_one_line(tmp_path: Path) -> None:
    state = Path(os.environ["RFS_DEPLOY_STATE"])
    open_seams(STACK, backend="sim", scenario="healthy", fresh=True).close()
    path = state / "sandbox" / STACK / "state.json"
    saved = json.loads(path.read_text())
    for resource in saved["resources"]:
        if "vpcId" in resource["inputs"]:
            resource["inputs"]["vpcId"] = "vpc-0000000000000dead"
    path.write_text(json.dumps(saved))
    env = {**os.environ, "RFS_DEPLOY_BACKEND": "sim"}
    done = subprocess.run(
        [sys.executable, "-c", CLI, "history", "--stack", STACK],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "cannot be restored" in line and "vpc-0000000000000dead" in line
    assert "rfs-deploy sandbox-reset --stack production" in line
    assert "Traceback" not in done.stderr
