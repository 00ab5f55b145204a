"""`rfs-deploy simulate --engine pulumi`: the sandbox's canary through the real engine, from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine_support import PROJECT


def test_simulate_through_the_engine_rolls_back_an_error_spike(tmp_path: Path) -> None:
    env = {**os.environ, "RFS_DEPLOY_STATE": str(tmp_path / "state"), "RFS_DEPLOY_PROJECT": str(PROJECT)}
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("rfs-deploy")), "--json", "simulate", "--engine", "pulumi",
            "--scenario", "error-spike", "--seed", "7", "--report", str(tmp_path / "report"),
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr[-3000:]
    payload = json.loads(done.stdout)
    assert payload["status"] == "ROLLED_BACK"
    assert payload["rolled_back_to"] is not None
    work = tmp_path / "state" / "engine" / "production"
    assert (work / "state" / ".pulumi").is_dir(), "the stack lives in Pulumi's file backend"
