"""The seed's examples, run as a newcomer runs them (``.venv/bin/python examples/seed_*.py``).

Each example is its own process, chosen by the environment as a user would choose: the sandbox by
``RFS_DEPLOY_BACKEND=sim``, the scenario by ``RFS_DEPLOY_SCENARIO``, state in a temp dir. Two
sequences share nothing but the code: one runs every example twice in a row; the other starts
with ``rfs-deploy simulate`` (``make demo``), runs the examples in the reverse order with failing
scenarios among them, and ends with ``simulate`` again. Every run of an example is held to what
the seed says it prints, its exit code, and the one deployment record it adds.
The custom strategy's building blocks (``health_check``, ``collect_metrics``,
``should_rollback``) are also driven in-process, with numbers the sandbox's traffic produced.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_world import REPO

from rfs_deploy import seed_support
from rfs_deploy.strategies import HealthStatus

EXAMPLES = REPO / "examples"
NAMES = ("blue_green", "canary", "rolling", "deployer", "custom_strategy")
CLI = "import sys; from rfs_deploy.cli import main; sys.exit(main())"


@dataclass(frozen=True)
class Step:
    """One process of a sequence: an example (``name``), or the CLI (``cli`` arguments)."""

    name: str
    #: RFS_DEPLOY_SCENARIO; None leaves it unset (a kept session keeps its own).
    scenario: str | None = "healthy"
    cli: tuple[str, ...] = ()
    #: RFS_DEPLOY_KEEP_SANDBOX=1: continue the saved session instead of a fresh one.
    keep: bool = False


@dataclass(frozen=True)
class Ran:
    """One process: what ran, its exit code, its output, and the deployment records it added."""

    step: Step
    sequence: str
    position: int
    returncode: int
    stdout: str
    stderr: str
    records: list[dict[str, Any]]

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def __repr__(self) -> str:  # what a failing assertion shows
        return f"<{self.sequence}#{self.position} {self.step.name}/{self.step.scenario} rc={self.returncode}>"


TWICE_EACH = [Step(name) for name in NAMES for _ in range(2)]
SIMULATE = Step("simulate", cli=("simulate", "--report", "{state}/report"))
REVERSED = [
    SIMULATE,
    Step("custom_strategy"),
    Step("deployer"),
    Step("rolling"),
    Step("deployer", "error-spike"),
    Step("canary", "error-spike"),
    Step("canary"),
    Step("status", cli=("--json", "status", "--stack", "production")),
    Step("blue_green"),
    SIMULATE,
    Step("canary", None, keep=True),
]


def run_sequence(label: str, steps: list[Step], state: Path) -> list[Ran]:
    """Run ``steps`` one after another from the repository, all with sandbox state in ``state``."""
    folder = state / "deployments" / "sim"
    done: list[Ran] = []
    for position, step in enumerate(steps):
        before = set(folder.glob("*.json")) if folder.is_dir() else set()
        unset = ("RFS_DEPLOY_SCENARIO", "RFS_DEPLOY_KEEP_SANDBOX")
        env = {k: v for k, v in os.environ.items() if k not in unset}
        env.update(RFS_DEPLOY_BACKEND="sim", RFS_DEPLOY_STATE=str(state), PYTHONIOENCODING="utf-8")
        if step.scenario is not None:
            env["RFS_DEPLOY_SCENARIO"] = step.scenario
        if step.keep:
            env["RFS_DEPLOY_KEEP_SANDBOX"] = "1"
        if step.cli:
            argv = [sys.executable, "-c", CLI, *(a.format(state=state) for a in step.cli)]
        else:
            argv = [sys.executable, f"examples/seed_{step.name}.py"]
        proc = subprocess.run(
            argv, cwd=REPO, env=env, capture_output=True, text=True, encoding="utf-8", timeout=600
        )
        added = sorted(set(folder.glob("*.json")) - before) if folder.is_dir() else []
        records = [json.loads(p.read_text()) for p in added]
        done.append(Ran(step, label, position, proc.returncode, proc.stdout, proc.stderr, records))
    return done


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> list[Ran]:
    """Both sequences, side by side (each is its own state dir and its own processes)."""
    base = tmp_path_factory.mktemp("examples")
    with ThreadPoolExecutor(max_workers=2) as pool:
        twice = pool.submit(run_sequence, "twice-each", TWICE_EACH, base / "twice-each")
        reverse = pool.submit(run_sequence, "reversed", REVERSED, base / "reversed")
        return twice.result() + reverse.result()


def runs_of(ran: list[Ran], name: str, scenario: str | None = "healthy", keep: bool = False) -> list[Ran]:
    found = [r for r in ran if (r.step.name, r.step.scenario, r.step.keep) == (name, scenario, keep)]
    assert found, (name, scenario, keep)
    return found


def only_record(run: Ran) -> dict[str, Any]:
    assert len(run.records) == 1, (run, run.records)
    return run.records[0]


def test_every_example_ran_at_least_twice(ran: list[Ran]) -> None:
    for name in NAMES:
        assert len(runs_of(ran, name)) >= 3, name  # twice in a row, and once in the other order


def test_blue_green_prints_success_duration_and_rate(ran: list[Ran]) -> None:
    for run in runs_of(ran, "blue_green"):
        assert run.returncode == 0, (run, run.stdout, run.stderr)
        assert run.lines[0] == "Deployment succeeded!", run
        duration = re.fullmatch(r"Duration: ([0-9.]+)", run.lines[1])
        rate = re.fullmatch(r"Success rate: ([0-9.]+)%", run.lines[2])
        assert duration and rate, (run, run.lines)
        record = only_record(run)
        assert (record["strategy"], record["status"]) == ("blue-green", "COMPLETED")
        assert (record["previous_version"], record["version"]) == ("v1.0.0", "v2.0.0")
        assert float(duration.group(1)) == record["ended_at"] - record["started_at"] > 0
        assert 99.0 <= float(rate.group(1)) < 100.0


def test_canary_succeeds_when_healthy(ran: list[Ran]) -> None:
    for run in runs_of(ran, "canary"):
        assert run.returncode == 0, (run, run.stdout, run.stderr)
        assert run.lines == ["success"], run
        record = only_record(run)
        assert (record["strategy"], record["status"], record["version"]) == ("canary", "COMPLETED", "v2.0.0")
        weights = [s["weights"]["green"] for s in record["samples"]]
        assert weights == sorted(weights)
        assert list(dict.fromkeys(weights)) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]  # 10% → 20% → ...


def test_canary_fails_rolls_back_and_exits_non_zero_under_an_error_spike(ran: list[Ran]) -> None:
    [run] = runs_of(ran, "canary", "error-spike")
    assert run.returncode == 1, (run, run.stderr)
    [line] = run.lines
    assert line.startswith("failed: ROLLED_BACK: ") and "5xx" in line
    record = only_record(run)
    assert record["status"] == "ROLLED_BACK" and record["rolled_back_to"] == 1
    assert all(s["weights"]["green"] < 100 for s in record["samples"])


def test_rolling_updates_every_instance(ran: list[Ran]) -> None:
    for run in runs_of(ran, "rolling"):
        assert run.returncode == 0, (run, run.stdout, run.stderr)
        assert run.lines == ["All instances updated", "Healthy instances: 10/10"], run
        record = only_record(run)
        assert (record["strategy"], record["status"]) == ("rolling", "COMPLETED")
        assert (record["instance_count"], record["healthy_instances"]) == (10, 10)


def test_deployer_runs_hooks_in_order_and_lists_its_session_history(ran: list[Ran]) -> None:
    for run in runs_of(ran, "deployer"):
        assert run.returncode == 0, (run, run.stdout, run.stderr)
        record = only_record(run)
        assert (record["strategy"], record["status"]) == ("canary", "COMPLETED")
        dep_id = record["deployment_id"]
        # the history is the fresh session's: earlier runs' records are not listed
        assert run.lines == [
            "Migrating the database before the deployment...",
            "Clearing the cache...",
            f"Deployment ID: {dep_id}",
            "Status: COMPLETED",
            "Version: v2.0.0",
            f"- {dep_id}: COMPLETED",
        ], run


def test_deployer_rolled_back_prints_its_status_and_exits_non_zero(ran: list[Ran]) -> None:
    [run] = runs_of(ran, "deployer", "error-spike")
    assert run.returncode == 1, (run, run.stderr)
    record = only_record(run)
    assert record["status"] == "ROLLED_BACK"
    assert run.lines[0] == "Migrating the database before the deployment..."
    assert f"Deployment ID: {record['deployment_id']}" in run.lines
    assert "Status: ROLLED_BACK" in run.lines


def test_custom_strategy_runs_as_written(ran: list[Ran]) -> None:
    for run in runs_of(ran, "custom_strategy"):
        assert run.returncode == 0, (run, run.stdout, run.stderr)
        assert run.lines[0] == "Custom deployment started: api-service -> v1.0.0", run
        assert run.lines[1].startswith("Success(value=DeploymentMetrics(")
        assert "success_rate=0.99" in run.lines[1]
        assert run.records == []  # it checks the running version; it deploys nothing


def test_simulate_before_and_after_the_examples_completes(ran: list[Ran]) -> None:
    simulated = runs_of(ran, "simulate")
    assert len(simulated) == 2
    for run in simulated:
        assert run.returncode == 0, (run, run.stderr)
        assert only_record(run)["status"] == "COMPLETED"


def test_status_after_an_example_shows_its_deployment(ran: list[Ran]) -> None:
    [status] = runs_of(ran, "status")
    before = ran[ran.index(status) - 1]
    assert before.step.name == "canary" and before.returncode == 0
    assert status.returncode == 0, status.stderr
    payload = json.loads(status.stdout)
    assert payload["deployment_id"] == only_record(before)["deployment_id"]
    assert payload["status"] == "COMPLETED"


def test_keeping_the_sandbox_continues_the_saved_session(ran: list[Ran]) -> None:
    # after simulate has released v2.0.0, the kept session has nothing to release
    [run] = runs_of(ran, "canary", None, keep=True)
    assert run.returncode == 1, (run, run.stderr)
    assert run.lines == ["failed: version 'v2.0.0' is already live (slot green)"]
    assert run.records == []


def test_no_example_writes_a_traceback_or_korean(ran: list[Ran]) -> None:
    hangul = re.compile("[\uac00-\ud7a3]")
    for run in ran:
        assert "Traceback" not in run.stderr, (run, run.stderr)
        assert not hangul.search(run.stdout + run.stderr), run
    for path in EXAMPLES.glob("seed_*.py"):
        assert not hangul.search(path.read_text(encoding="utf-8")), path


# --------------------------------------------------------------------------- custom strategy, in-process


@pytest.fixture
def custom_strategy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[type]:
    """The example's CustomStrategy class, with the process's seams on a fresh sandbox."""
    monkeypatch.setenv("RFS_DEPLOY_BACKEND", "sim")
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(tmp_path / "state"))
    seed_support.reset()
    namespace = runpy.run_path(str(EXAMPLES / "seed_custom_strategy.py"), run_name="seed_custom_strategy")
    yield namespace["CustomStrategy"]
    seed_support.reset()


def let_traffic_flow(seconds: float) -> None:
    asyncio.run(seed_support.seams_for("production").clock.sleep(seconds))


def test_custom_strategy_reads_health_and_metrics_from_the_sandbox(custom_strategy: type) -> None:
    strategy = custom_strategy()
    let_traffic_flow(300)
    assert asyncio.run(strategy.health_check("api-service", "v1.0.0")) is HealthStatus.HEALTHY
    assert asyncio.run(strategy.health_check("api-service", "v9.9.9")) is HealthStatus.UNKNOWN
    metrics = asyncio.run(strategy.collect_metrics("api-service", "v1.0.0")).value
    # the healthy scenario: 0.2% 5xx, p99 0.35 s, CPU 35% on 10 instances
    assert 0 < metrics.error_rate < 0.01
    assert 0.2 < metrics.p99_latency < 0.6
    assert 25 < metrics.cpu_usage < 45
    assert (metrics.instance_count, metrics.healthy_instances) == (10, 10)
    assert strategy.should_rollback(metrics) is False
    result = asyncio.run(strategy.deploy("api-service", "v1.0.0"))
    assert result.is_success() and result.value.success_rate == 0.99


def test_custom_strategy_rolls_back_on_bad_metrics(
    custom_strategy: type, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a user's scenario in which the running version itself fails one request in five
    scenario = tmp_path / "bad-baseline.yaml"
    scenario.write_text("description: the running version is broken\nbaseline: {errorRate: 0.2}\n")
    monkeypatch.setenv("RFS_DEPLOY_SCENARIO", str(scenario))
    strategy = custom_strategy()
    let_traffic_flow(300)
    metrics = asyncio.run(strategy.collect_metrics("api-service", "v1.0.0")).value
    assert 0.15 < metrics.error_rate < 0.25
    assert strategy.should_rollback(metrics) is True
    result = asyncio.run(strategy.deploy("api-service", "v1.0.0"))
    assert not result.is_success() and result.error == "Metrics below the thresholds"


def test_custom_strategy_metrics_of_a_fresh_stack_come_from_its_first_minute(custom_strategy: type) -> None:
    strategy = custom_strategy()  # no traffic has flowed yet: collect_metrics observes a period
    before = seed_support.seams_for("production").clock.now()
    metrics = asyncio.run(strategy.collect_metrics("api-service", "v1.0.0")).value
    assert seed_support.seams_for("production").clock.now() - before == 60
    assert metrics.error_rate < 0.01 and metrics.p99_latency > 0
