"""The seed's examples, run as written (``examples/seed_*.py``) against the sandbox.

Each example runs in its own process, chosen by the environment as a user would: the sandbox by
``RFS_DEPLOY_BACKEND=sim``, the scenario by ``RFS_DEPLOY_SCENARIO``, state in a temp dir. The
tests check what the seed says each example prints, and the deployment record it leaves.
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
RUNS = (
    ("blue_green", "healthy"),
    ("canary", "healthy"),
    ("canary", "error-spike"),
    ("rolling", "healthy"),
    ("deployer", "healthy"),
    ("custom_strategy", "healthy"),
)


@dataclass(frozen=True)
class Ran:
    """One example's process: exit code, output, and the deployment records it left."""

    returncode: int
    stdout: str
    stderr: str
    records: list[dict[str, Any]]

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


def run_example(name: str, scenario: str, base: Path) -> Ran:
    work = base / f"{name}-{scenario}"
    work.mkdir()
    env = {
        **os.environ,
        "RFS_DEPLOY_BACKEND": "sim",
        "RFS_DEPLOY_SCENARIO": scenario,
        "RFS_DEPLOY_STATE": str(work / "state"),
        "PYTHONIOENCODING": "utf-8",
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"seed_{name}.py")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=600,
    )
    folder = work / "state" / "deployments" / "sim"
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return Ran(done.returncode, done.stdout, done.stderr, records)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Ran]:
    """Every example run once, two at a time (each is its own process and its own sandbox)."""
    base = tmp_path_factory.mktemp("examples")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(run_example, *key, base) for key in RUNS}
        return {key: future.result() for key, future in futures.items()}


def only_record(run: Ran) -> dict[str, Any]:
    assert len(run.records) == 1, run.records
    return run.records[0]


def test_blue_green_prints_success_duration_and_rate(ran: dict[tuple[str, str], Ran]) -> None:
    run = ran["blue_green", "healthy"]
    assert run.returncode == 0, run.stderr
    assert run.lines[0] == "배포 성공!"
    duration = re.fullmatch(r"소요 시간: ([0-9.]+)", run.lines[1])
    rate = re.fullmatch(r"성공률: ([0-9.]+)%", run.lines[2])
    assert duration and rate, run.lines
    record = only_record(run)
    assert (record["strategy"], record["status"]) == ("blue-green", "COMPLETED")
    assert float(duration.group(1)) == record["ended_at"] - record["started_at"] > 0
    assert 99.0 <= float(rate.group(1)) < 100.0


def test_canary_succeeds_when_healthy(ran: dict[tuple[str, str], Ran]) -> None:
    run = ran["canary", "healthy"]
    assert run.returncode == 0, run.stderr
    assert run.lines == ["success"]
    record = only_record(run)
    assert (record["strategy"], record["status"], record["version"]) == ("canary", "COMPLETED", "v2.0.0")
    weights = [s["weights"]["green"] for s in record["samples"]]
    assert weights == sorted(weights)
    assert list(dict.fromkeys(weights)) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]  # 10% → 20% → ...


def test_canary_fails_and_rolls_back_under_an_error_spike(ran: dict[tuple[str, str], Ran]) -> None:
    run = ran["canary", "error-spike"]
    assert run.returncode == 0, run.stderr
    [line] = run.lines
    assert line.startswith("failed: ROLLED_BACK: ") and "5xx" in line
    record = only_record(run)
    assert record["status"] == "ROLLED_BACK" and record["rolled_back_to"] == 1
    assert all(s["weights"]["green"] < 100 for s in record["samples"])


def test_rolling_updates_every_instance(ran: dict[tuple[str, str], Ran]) -> None:
    run = ran["rolling", "healthy"]
    assert run.returncode == 0, run.stderr
    assert run.lines == ["모든 인스턴스 업데이트 완료", "건강한 인스턴스: 10/10"]
    record = only_record(run)
    assert (record["strategy"], record["status"]) == ("rolling", "COMPLETED")
    assert (record["instance_count"], record["healthy_instances"]) == (10, 10)


def test_deployer_runs_hooks_in_order_and_lists_history(ran: dict[tuple[str, str], Ran]) -> None:
    run = ran["deployer", "healthy"]
    assert run.returncode == 0, run.stderr
    record = only_record(run)
    assert (record["strategy"], record["status"]) == ("canary", "COMPLETED")
    dep_id = record["deployment_id"]
    assert run.lines == [
        "배포 전 데이터베이스 마이그레이션...",
        "캐시 초기화...",
        f"배포 ID: {dep_id}",
        "상태: COMPLETED",
        "버전: v2.0.0",
        f"- {dep_id}: COMPLETED",
    ]


def test_custom_strategy_runs_as_written(ran: dict[tuple[str, str], Ran]) -> None:
    run = ran["custom_strategy", "healthy"]
    assert run.returncode == 0, run.stderr
    assert run.lines[0] == "커스텀 배포 시작: api-service -> v1.0.0"
    assert run.lines[1].startswith("Success(value=DeploymentMetrics(") and "success_rate=0.99" in run.lines[1]
    assert run.records == []  # it checks the running version; it deploys nothing


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
    assert not result.is_success() and result.error == "메트릭 기준 미달"


def test_custom_strategy_metrics_of_a_fresh_stack_come_from_its_first_minute(custom_strategy: type) -> None:
    strategy = custom_strategy()  # no traffic has flowed yet: collect_metrics observes a period
    before = seed_support.seams_for("production").clock.now()
    metrics = asyncio.run(strategy.collect_metrics("api-service", "v1.0.0")).value
    assert seed_support.seams_for("production").clock.now() - before == 60
    assert metrics.error_rate < 0.01 and metrics.p99_latency > 0
