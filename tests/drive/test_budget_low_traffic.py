"""A quiet canary and the deployment's time budget (issue 15): thin windows extend a release's
steps only within the budget; when the budget would run out while the pooled evidence is still
undecided, the step ends as ``analysis.onInconclusive`` says instead of as a budget rollback. On
the fakes at the Protocol seams: at 50 requests a minute a 10 % canary sees five a minute."""

from __future__ import annotations

import pytest
from drive_world import SERVICE, World, build_world, promoted, run, same_release

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive import events
from rfs_deploy.drive.judge import StepJudge
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.drive.rules import Outcome, Window
from rfs_deploy.metrics.base import SlotMetrics

QUIET = 50


def quiet_world() -> World:
    world = build_world()
    world.cloud.requests_per_minute = QUIET
    return world


def budget_errors(record: DeploymentRecord) -> list[str]:
    return [e for e in record.errors if "exceeded its time budget" in e]


def test_a_quiet_canary_is_paused_for_a_person_before_its_budget_runs_out() -> None:
    world = quiet_world()
    record = world.deploy("canary")

    assert record.status is DeploymentStatus.IN_PROGRESS and record.paused is not None, record.errors
    assert record.rolled_back_to is None and not budget_errors(record)
    reason = record.paused["reason"]
    assert "time budget" in reason and "thin windows" in reason and "requests pooled" in reason, reason
    assert "waiting for a person" in reason
    assert not [v for v in record.verdicts if v.outcome == "FAIL"]
    held = next(s for s in record.steps if s.index == record.paused["step"])
    assert held.kind == "analyze" and held.outcome == "paused"
    # the step stopped inside the budget: the last verdict is no later than the budget's end
    assert record.verdicts[-1].numbers.get("time_budget") is True

    # a person promotes (the budget starts again, deploy.pauseCountsTowardsDeadline is false):
    # the deployment continues with the next step and, with traffic back, completes
    world.cloud.requests_per_minute = 1000
    done = run(world.driver().promote(SERVICE))
    assert done.status is DeploymentStatus.COMPLETED, done.errors
    assert same_release(world.release(), promoted("canary", world.start))
    later = [s for s in done.steps if s.index > record.paused["step"]]
    assert later and all(s.outcome == "passed" for s in later)


def test_a_budget_pause_that_counts_towards_the_deadline_rolls_back_at_promote_saying_why() -> None:
    # the step paused because the budget was about to run out: with the pause counted, the budget
    # is spent by the time a person looks, and promote rolls back (documented in docs/gates.md)
    world = build_world(service_changes={"deploy": {"pauseCountsTowardsDeadline": True}})
    world.cloud.requests_per_minute = QUIET
    record = world.deploy("canary")
    assert record.paused is not None and "time budget" in record.paused["reason"], record.errors
    assert record.paused["deadline"] <= world.clock.now() + 60 * 2

    world.clock.advance(600)
    world.cloud.requests_per_minute = 1000
    after = run(world.driver().promote(SERVICE))

    assert after.status is DeploymentStatus.ROLLED_BACK
    why = " ".join(after.errors)
    assert "ran out while paused" in why and "deploy.pauseCountsTowardsDeadline" in why, why
    assert world.release() == world.start


def test_with_on_inconclusive_rollback_the_undecided_step_rolls_back_for_lack_of_data() -> None:
    record = quiet_world().deploy("canary", overrides={"analysis": {"onInconclusive": "rollback"}})

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert not budget_errors(record), record.errors
    # onInconclusive: rollback stops a thin step at its allowance, long before the budget
    assert any("not enough data" in e and "onInconclusive: rollback" in e for e in record.errors), (
        record.errors
    )


def test_with_on_inconclusive_promote_the_quiet_canary_completes() -> None:
    world = quiet_world()
    record = world.deploy("canary", overrides={"analysis": {"onInconclusive": "promote"}})

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert not budget_errors(record)
    assert any("time budget" in v.reason and "promoted" in v.reason for v in record.verdicts)
    assert same_release(world.release(), promoted("canary", world.start))


def test_a_busy_canary_never_ends_early_for_the_budget() -> None:
    world = build_world()
    world.cloud.requests_per_minute = 1000
    record = world.deploy("canary")
    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert not [v for v in record.verdicts if "time budget" in v.reason]


def busy_seconds() -> float:
    """How long the canary's plan takes when every window is judged at once (1,000 rpm)."""
    world = build_world()
    world.cloud.requests_per_minute = 1000
    started = world.clock.now()
    assert world.deploy("canary").status is DeploymentStatus.COMPLETED
    return world.clock.now() - started


def test_thin_windows_that_ate_the_budget_pause_the_release_between_steps() -> None:
    # quiet for the first three windows, busy after: the steps that follow pass at once, but the
    # thin windows' extension used up a tight budget (deploymentTimeout 30s over the plan)
    world = quiet_world()
    thin: list[object] = []

    def traffic_returns(event: object) -> None:
        if isinstance(event, events.Tick) and event.outcome == "INCONCLUSIVE":
            thin.append(event)
            if len(thin) == 3:
                world.cloud.requests_per_minute = 1000

    budget = {"deploy": {"deploymentTimeout": f"{round(busy_seconds()) + 30}s"}}
    record = world.deploy("canary", overrides=budget, listeners=[traffic_returns])

    assert record.status is DeploymentStatus.IN_PROGRESS and record.paused is not None, record.errors
    assert record.rolled_back_to is None and not budget_errors(record)
    reason = record.paused["reason"]
    assert "time budget ran out before step" in reason and "too thin to judge" in reason, reason
    assert "waiting for a person" in reason
    held = next(s for s in record.steps if s.index == record.paused["step"])
    assert held.outcome == "passed", "held after the step that ended past the budget"


def test_a_budget_that_runs_out_for_another_reason_still_rolls_back() -> None:
    # busy, but CloudWatch silent for ten minutes: windows without data are no thin evidence
    world = build_world(service_changes={"analysis": {"maxInconclusive": 20}})
    world.cloud.requests_per_minute = 1000
    world.metrics.missing = 10
    budget = {"deploy": {"deploymentTimeout": f"{round(busy_seconds()) + 30}s"}}
    record = world.deploy("canary", overrides=budget)
    assert record.status is DeploymentStatus.ROLLED_BACK
    assert budget_errors(record), record.errors


def slot(requests: int) -> SlotMetrics:
    return SlotMetrics(requests=requests, errors=0, p99=0.2, cpu=40.0)


@pytest.mark.parametrize(
    ("setting", "outcome", "words"),
    [
        ("pause", Outcome.INCONCLUSIVE, "waiting for a person"),
        ("rollback", Outcome.FAIL, "analysis.onInconclusive: rollback"),
        ("promote", Outcome.PASS, "promoted, as analysis.onInconclusive says"),
    ],
)
def test_a_step_out_of_time_ends_as_on_inconclusive_says(setting: str, outcome: Outcome, words: str) -> None:
    step = StepJudge(Analysis(on_inconclusive=setting), baseline=True, windows=1, release=True)  # type: ignore[arg-type]
    step.observe(Window(slot(5), slot(45)))
    assert step.result is None and step.pool is not None
    result = step.out_of_time()
    assert result.outcome is outcome and words in result.reason
    assert "1 thin windows, 5 requests pooled (need 100)" in result.reason
    assert "time budget" in result.reason and step.result is result


def test_a_step_without_thin_windows_is_not_out_of_time_for_lack_of_traffic() -> None:
    step = StepJudge(Analysis(), baseline=True, windows=2, release=True)
    step.observe(Window(slot(500), slot(4500)))
    with pytest.raises(RuntimeError, match="no thin windows pooled"):
        step.out_of_time()
