"""A user's own scenario file: accepted by path, inheriting what it does not say, validated."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from e2e_world import NEW, OLD, SERVICE, STACK, observe

from rfs_deploy.connect import open_seams
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.errors import ScenarioError
from rfs_deploy.sim import load_scenario

MINE = """\
# v2.0.0 is slower everywhere ("new") and, on top of that, fails one request in four
description: a user's own scenario
seed: 42
traffic: {requestsPerMinute: 3000}
new:
  latency: {median: 0.1, p99: 0.5}
versions:
  v2.0.0: {errorRate: 0.25}
"""


def test_a_users_scenario_file_runs_a_deployment(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(MINE)
    scenario = load_scenario(path)
    assert scenario.name == "mine" and scenario.traffic.requests_per_minute == 3000
    v2 = scenario.behaviour(NEW, OLD)
    # versions.v2.0.0 inherits from new, which inherits from baseline
    assert (v2.error_rate, v2.latency.p99, v2.cpu) == (0.25, 0.5, scenario.baseline.cpu)

    seams = open_seams(STACK, backend="sim", scenario=str(path), fresh=True)
    try:
        record = asyncio.run(Driver(seams).deploy(SERVICE, NEW, "canary"))
        run = observe(seams, "mine", "canary", record)
    finally:
        seams.close()
    assert record.status is DeploymentStatus.ROLLED_BACK
    assert "5xx" in record.errors[-1]
    assert run.final == run.checkpoint and run.versions(run.final.live) == {OLD: 10}
    assert run.max_new_weight() == 10


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("new:\n  errorRat: 0.3\n", "new.errorRat: unknown key; did you mean 'errorRate'?"),
        ("baseline: {latency: {median: 0.5, p99: 0.1}}\n", "p99 must not be below median"),
        ("traffic: {requestsPerMinute: -5}\n", "traffic.requestsPerMinute"),
        ("new: [1, 2\n", "is not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_a_broken_scenario_file_is_one_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as raised:
        open_seams(STACK, backend="sim", scenario=str(path), fresh=True)
    message = str(raised.value)
    assert "\n" not in message and says in message
    assert message.startswith(f"scenario {path}")


def test_a_missing_scenario_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"^cannot read scenario file .*nothing\.yaml"):
        open_seams(STACK, backend="sim", scenario=str(tmp_path / "nothing.yaml"), fresh=True)
