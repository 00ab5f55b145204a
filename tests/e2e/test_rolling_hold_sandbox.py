"""A rolling release on a service too quiet to judge, end to end in the sandbox: the instance
refresh is held (no instance is replaced while the deployment waits for a person), and
``promote`` starts the refresh again from where it stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from e2e_world import NEW, SERVICE, STACK

from rfs_deploy.drive.records import RecordStore

REPO = Path(__file__).resolve().parents[2]

#: Five requests a minute: no window, and no pool of six windows, reaches minRequests (100).
QUIET = """\
description: a healthy new version at about five requests a minute
seed: 5
traffic:
  requestsPerMinute: 5
baseline:
  errorRate: 0.005
  latency: {median: 0.08, p99: 0.35}
new: {}
"""


def cli(state: Path, *args: str) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, "RFS_DEPLOY_STATE": str(state), "RFS_DEPLOY_PROJECT": str(REPO)}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    env.pop("RFS_DEPLOY_BACKEND", None)
    argv = [sys.executable, "-m", "rfs_deploy", "--backend", "sim", "--json", *args]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=600, check=False)
    assert done.stdout, done.stderr[-2000:]
    return done.returncode, json.loads(done.stdout)


def test_a_quiet_rolling_release_holds_its_refresh_and_promote_starts_it_again(tmp_path: Path) -> None:
    scenario = tmp_path / "quiet.yaml"
    scenario.write_text(QUIET)
    code, payload = cli(
        tmp_path,
        *("deploy", "--stack", STACK, "--service", SERVICE, "--version", NEW),
        *("--strategy", "rolling", "--scenario", str(scenario)),
    )

    assert code == 5 and payload["status"] == "PAUSED", payload
    reason = payload["paused"]["reason"]
    assert "waiting for a person" in reason and "the instance refresh is held" in reason, reason
    records = RecordStore(tmp_path / "deployments" / "sim")
    record = records.load(payload["deployment_id"])
    assert record.rolled_back_to is None and not [v for v in record.verdicts if v.outcome == "FAIL"]
    watch = next(s for s in record.steps if s.kind == "watch-refresh")
    assert watch.outcome == "paused"
    held_at = int(reason.split("the instance refresh is held at ")[1].split("%")[0])
    assert held_at < 100, "the whole fleet was not replaced while the windows were undecided"

    code, again = cli(tmp_path, "promote", "--stack", STACK, "--service", SERVICE)
    assert again["deployment_id"] == payload["deployment_id"]
    assert again["status"] in ("PAUSED", "COMPLETED"), again
    after = records.load(payload["deployment_id"])
    assert after.rolled_back_to is None
    # promote ran the watch again (its step, not the one after it), which started the refresh
    watches = [v for v in after.verdicts if v.step == watch.index]
    assert len(watches) > len([v for v in record.verdicts if v.step == watch.index])
