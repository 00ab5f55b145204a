"""The issue's "done when" matrix, through the real sandbox: every scenario against the strategies.

Each test judges one deployment of ``api-service`` v1.0.0 → v2.0.0 on the repository's
``production`` stack (10 instances, a 300 s warm-up), run by the real driver on a fresh sandbox
session: moto behind the production adapters, the program under Pulumi's mock runtime, virtual
time. Outcomes are read back from the stack history (the release state of every update), the
deployment record (steps, samples, verdicts) and the sandbox itself (listener weights and target
health from moto, the version each instance was launched with).
"""

from __future__ import annotations

import itertools

import pytest
from e2e_world import NEW, OLD, Deploy, Run

from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.sim import load_scenario

STRATEGIES = ("canary", "blue-green", "rolling", "ab-test")
BAD = ("error-spike", "latency-regression")
#: What the rollback reason names, per scenario: the 5xx alarm or error rate, the p99 alarm or latency.
CAUSE = {"error-spike": ("5xx", "error rate", "answered 500"), "latency-regression": ("p99",)}
#: The step that judges a bad version before full traffic, per strategy.
JUDGED_BY = {"canary": "analyze", "blue-green": "validate"}


def assert_back_at_checkpoint(run: Run) -> None:
    """ROLLED_BACK, the stack config and moto back at the pre-deployment checkpoint, v1 everywhere."""
    record = run.record
    assert record.status is DeploymentStatus.ROLLED_BACK, record.errors
    assert record.rolled_back_to == run.checkpoint_version
    assert run.final == run.checkpoint
    live = run.checkpoint.live
    assert run.listener == {live: 100, run.checkpoint.idle: 0}
    assert run.versions(live) == {OLD: 10}
    assert run.healthy[live] == 10
    everywhere = [i.version for slot in run.instances for i in run.instances[slot]]
    assert NEW not in everywhere
    assert run.history[-1].result == "succeeded"


# --------------------------------------------------------------------------- healthy


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_healthy_version_completes(deployments: Deploy, strategy: str) -> None:
    run = deployments("healthy", strategy)
    record = run.record
    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert all(s.outcome == "passed" for s in record.steps)
    assert not [v for v in record.verdicts if v.outcome == "FAIL"]
    live = run.final.live
    assert run.final.slot(live).version == NEW
    assert run.listener[live] == 100
    assert run.versions(live) == {NEW: 10}
    assert run.healthy[live] == 10
    assert not run.instances[run.final.idle], "the old slot is scaled to zero"
    assert all(e.result == "succeeded" for e in run.history if run.ours(e))
    if strategy == "ab-test":
        assert record.decision is not None and record.decision.startswith("B")


# --------------------------------------------------------------------------- bad versions


@pytest.mark.parametrize("scenario", BAD)
@pytest.mark.parametrize("strategy", ("canary", "blue-green"))
def test_bad_version_is_rolled_back_to_the_checkpoint(
    deployments: Deploy, strategy: str, scenario: str
) -> None:
    run = deployments(scenario, strategy)
    assert_back_at_checkpoint(run)
    failed = [s for s in run.record.steps if s.outcome == "failed"]
    # canary judges its first 10% step; blue-green judges the idle slot under probe load
    assert [s.kind for s in failed] == [JUDGED_BY[strategy]]
    assert any(word in failed[0].reason for word in CAUSE[scenario]), failed[0].reason
    # the deployment never got as far as promoting the new slot
    assert all(r.live == run.checkpoint.live for r in run.deployment_releases())


@pytest.mark.parametrize("strategy", ["canary", "blue-green"])
@pytest.mark.parametrize("scenario", BAD)
def test_bad_version_never_gets_full_traffic(deployments: Deploy, strategy: str, scenario: str) -> None:
    run = deployments(scenario, strategy)
    assert run.record.status is DeploymentStatus.ROLLED_BACK
    assert run.deployment_releases(), "the deployment ran updates"
    assert run.max_new_weight() < 100


@pytest.mark.parametrize("scenario", BAD)
def test_rolling_stops_and_rolls_back_its_refresh(deployments: Deploy, scenario: str) -> None:
    run = deployments(scenario, "rolling")
    assert_back_at_checkpoint(run)
    failed = [s for s in run.record.steps if s.outcome == "failed"]
    assert [s.kind for s in failed] == ["watch-refresh"]
    assert any(word in failed[0].reason for word in CAUSE[scenario]), failed[0].reason
    live = run.checkpoint.live
    started = run.record.started_at
    refreshes = [r for r in run.refreshes[live] if r["StartTime"].timestamp() >= started]
    oldest_first = list(reversed(refreshes))
    rollout, *after = oldest_first
    assert rollout["Status"] != "Successful", "the v2.0.0 refresh was stopped before it finished"
    assert rollout["PercentageComplete"] < 100
    assert after and after[-1]["Status"] == "Successful", "the rollback replaced the instances again"


# --------------------------------------------------------------------------- flaky metrics


FLAKY_SEEDS = [
    ("canary", None),
    ("canary", 14),
    # seed 11 used to run out of its time budget: windows ended mid-period and asked for the
    # minute still being filled, so every other window found no data (fixed by aligning windows)
    ("canary", 11),
    ("blue-green", None),
    ("blue-green", 3),
    # seed 6 used to run out of data in its bake: six empty windows in nine (never more than
    # three in a row) counted against maxInconclusive (fixed by limiting the run of empty windows)
    ("blue-green", 6),
]


@pytest.mark.parametrize(("strategy", "seed"), FLAKY_SEEDS)
def test_flaky_metrics_do_not_roll_back_a_healthy_version(
    deployments: Deploy, strategy: str, seed: int | None
) -> None:
    run = deployments("flaky-metrics", strategy, seed)
    outcomes = [v.outcome for v in run.record.verdicts]
    assert "INCONCLUSIVE" in outcomes, "the scenario's missing, late and throttled metrics showed"
    assert "FAIL" not in outcomes
    assert run.record.status is DeploymentStatus.COMPLETED, run.record.errors
    assert run.versions(run.final.live) == {NEW: 10}


# --------------------------------------------------------------------------- slow start


@pytest.mark.parametrize("strategy", ("canary", "blue-green"))
def test_slow_start_gets_traffic_only_when_healthy_and_warm(deployments: Deploy, strategy: str) -> None:
    run = deployments("slow-start", strategy)
    slow = load_scenario("slow-start").new.slow_start
    record = run.record
    assert record.status is DeploymentStatus.COMPLETED, record.errors
    new = run.new_slot
    launched = max(i.launched_at for i in run.instances[new])
    assert run.versions(new) == {NEW: 10}
    ready = launched + max(slow.unhealthy_for, slow.degraded_for)
    first_traffic = min(
        e.start_time
        for e in run.history
        if run.ours(e) and e.release and e.release["api-service"].weights[new]
    )
    assert first_traffic >= ready
    wait = next(s for s in record.steps if s.kind == "wait-healthy")
    assert wait.outcome == "passed" and wait.ended_at is not None and wait.ended_at <= first_traffic
    assert all(s.at >= ready for s in record.samples if s.weights.get(new, 0) > 0)
    assert not [v for v in record.verdicts if v.outcome == "FAIL"]


def test_slow_start_rolling_replaces_a_batch_only_after_the_last_is_healthy(deployments: Deploy) -> None:
    run = deployments("slow-start", "rolling")
    slow = load_scenario("slow-start").new.slow_start
    assert run.record.status is DeploymentStatus.COMPLETED, run.record.errors
    live = run.final.live
    assert run.versions(live) == {NEW: 10}
    assert run.healthy[live] == 10
    batches = sorted({i.launched_at for i in run.instances[live]})
    assert len(batches) >= 2
    gaps = [b - a for a, b in itertools.pairwise(batches)]
    assert min(gaps) >= slow.unhealthy_for
    assert not [v for v in run.record.verdicts if v.outcome == "FAIL"]


def test_ab_test_under_an_error_spike_stops_at_its_split(deployments: Deploy) -> None:
    run = deployments("error-spike", "ab-test")
    assert_back_at_checkpoint(run)
    failed = [s for s in run.record.steps if s.outcome == "failed"]
    assert [s.kind for s in failed] == ["decide"]
    assert "5xx" in failed[0].reason
    assert 0 < run.max_new_weight() < 100


@pytest.mark.parametrize("strategy", ("canary", "blue-green"))
def test_a_version_that_never_becomes_healthy_gets_no_traffic(deployments: Deploy, strategy: str) -> None:
    run = deployments("never-healthy", strategy)
    assert_back_at_checkpoint(run)
    failed = [s for s in run.record.steps if s.outcome == "failed"]
    assert [s.kind for s in failed] == ["wait-healthy"]
    assert "0/10 healthy" in failed[0].reason
    assert run.max_new_weight() == 0
