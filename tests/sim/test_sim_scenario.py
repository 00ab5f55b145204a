"""Scenarios: built-ins load, inheritance works, bad files give one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rfs_deploy.errors import ScenarioError
from rfs_deploy.sim.scenario import builtin_scenarios, load_scenario, parse_scenario

REQUIRED = {"healthy", "error-spike", "latency-regression", "slow-start", "flaky-metrics"}


def test_builtins_are_shipped_and_valid() -> None:
    names = set(builtin_scenarios())
    assert names >= REQUIRED
    for name in names:
        assert load_scenario(name).name == name


def test_new_inherits_from_baseline_and_versions_from_new() -> None:
    scenario = parse_scenario(
        {
            "baseline": {"errorRate": 0.01, "cpu": 40},
            "new": {"errorRate": 0.2},
            "versions": {"v3.0.0": {"cpu": 80}},
        }
    )
    assert scenario.new.cpu == 40 and scenario.new.error_rate == 0.2
    v3 = scenario.behaviour("v3.0.0", "v1.0.0")
    assert (v3.error_rate, v3.cpu) == (0.2, 80)
    assert scenario.behaviour("v1.0.0", "v1.0.0").error_rate == 0.01
    assert scenario.behaviour("v2.0.0", "v1.0.0").error_rate == 0.2


def test_error_spike_makes_the_new_version_fail() -> None:
    scenario = load_scenario("error-spike")
    assert scenario.behaviour("v2.0.0", "v1.0.0").error_rate > 0.1 > scenario.baseline.error_rate


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"new": {"errRate": 0.1}}, "new.errRate: unknown key; did you mean 'errorRate'?"),
        ({"traffic": {"requestsPerMinute": -5}}, "traffic.requestsPerMinute: Input should be greater than"),
        ({"versions": {"v3": {"cpu": 250}}}, "versions.v3.cpu: Input should be less than or equal to 100"),
        ({"baseline": {"latency": {"median": 2, "p99": 1}}}, "p99 must not be below median"),
        ({"metrics": {"throttled": 2}}, "metrics.throttled: Input should be less than or equal to 1"),
        ({"versions": {"v3": {"slowStart": {"unhealthyFr": 1}}}}, "did you mean 'unhealthyFor'?"),
    ],
)
def test_bad_scenarios_fail_with_one_line_naming_the_key(data: dict, expected: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "mine.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("scenario mine.yaml: ")
    assert expected in message


def test_unknown_builtin_suggests_the_closest() -> None:
    with pytest.raises(ScenarioError, match="did you mean 'healthy'"):
        load_scenario("helthy")


def test_user_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("seed: 9\nnew:\n  neverHealthy: true\n")
    scenario = load_scenario(path)
    assert (scenario.name, scenario.seed, scenario.new.never_healthy) == ("mine", 9, True)
    bad = tmp_path / "bad.yaml"
    bad.write_text("traffic: [1, 2\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
