"""The runner through the driver, on the shipped fakes: promotion, rollback, waiting, analysis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from drive_world import NEW, SERVICE, STRATEGIES, World, build_world, promoted, run, same_release

from rfs_deploy.drive import events
from rfs_deploy.drive.journal import decode
from rfs_deploy.drive.protocols import RefreshStatus
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.drive.stack import VERIFY_POLL, VERIFY_TIMEOUT
from rfs_deploy.drive.steps import Change
from rfs_deploy.metrics import Readings, SlotSource
from rfs_deploy.testing import Behaviour, FakeMetrics, FakeTraffic

BAD = {
    "canary": Behaviour(error_rate=0.03),
    "blue-green": Behaviour(p99=3.0),
    "rolling": Behaviour(error_rate=0.20),
}


def plan_of(world: World, strategy: str) -> tuple[Any, ...]:
    return world.driver().plan(SERVICE, NEW, strategy)[3]


def changes_stack(steps: Sequence[Any]) -> int:
    """Updates a completed run makes: one per change, plus a ``done`` update after an observation."""
    return sum(isinstance(s, Change) for s in steps) + (0 if isinstance(steps[-1], Change) else 1)


def history_releases(world: World) -> list[Any]:
    return [e.release[SERVICE] for e in world.stack.history() if e.result == "succeeded" and e.release]


# --------------------------------------------------------------------------- healthy releases


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_promotes_a_healthy_version(world: World, strategy: str) -> None:
    steps = plan_of(world, strategy)
    record = world.deploy(strategy)

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert record.errors == []
    assert record.rolled_back_to is None
    expected = promoted(strategy, world.start)
    assert same_release(world.release(), expected)
    assert same_release(world.applied(), expected)
    final = world.release()
    assert final.slot(final.live).version == NEW
    assert final.weights[final.live] == 100
    assert final.slot(final.idle).capacity == 0
    assert world.stack.updates == changes_stack(steps)
    latest = world.latest()
    assert latest.status == "completed"
    assert latest.deployment_id == record.deployment_id
    assert [s.outcome for s in sorted(record.steps, key=lambda s: s.index)] == ["passed"] * len(steps)
    assert {t.phase for t in world.tags()} <= {"step", "done"}
    assert record.instance_count == 10 and record.healthy_instances == 10
    finished = [e for e in world.events if isinstance(e, events.DeploymentFinished)]
    assert [e.status for e in finished] == ["COMPLETED"]


def test_rolling_records_its_refresh_settings_while_it_runs_and_clears_them_at_the_end(world: World) -> None:
    record = world.deploy("rolling")

    assert record.status is DeploymentStatus.COMPLETED
    final = world.release()
    assert final.live == world.start.live
    assert final.slot(final.live).version == NEW
    assert final.rolling is None
    during = [e.release for e in world.stack.history() if e.release and "roll-refresh" in e.message]
    assert during and during[0]["api-service"].rolling is not None
    assert during[0]["api-service"].rolling.batch_size == 2
    assert world.tags()[-1].kind == "finish-refresh" and world.tags()[-1].phase == "step"


# --------------------------------------------------------------------------- bad versions


@pytest.mark.parametrize(
    ("strategy", "reason"),
    [("canary", "error rate"), ("blue-green", "p99 3s > 2s"), ("rolling", "error rate 20.00%")],
)
def test_a_bad_version_is_rolled_back_to_the_checkpoint(strategy: str, reason: str) -> None:
    world = build_world({NEW: BAD[strategy]})
    record = world.deploy(strategy)

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert record.rolled_back_to == 1
    assert record.rollback_attempts == 1
    assert world.release() == world.start
    assert world.applied() == world.start
    assert any(reason in e for e in record.errors), record.errors
    latest = world.latest()
    assert latest.status == "rolled-back"
    assert latest.checkpoint is not None and latest.checkpoint.version == 1
    assert world.tags()[-1].phase == "rollback"
    assert record.recovery is None


def test_a_failing_canary_never_reaches_full_traffic() -> None:
    world = build_world({NEW: BAD["canary"]})
    record = world.deploy("canary")

    assert record.status is DeploymentStatus.ROLLED_BACK
    idle = world.start.idle
    assert max(r.weights[idle] for r in history_releases(world)) < 100
    failed = [s for s in record.steps if s.outcome == "failed"]
    assert [s.kind for s in failed] == ["analyze"]


def test_a_rolling_rollback_cancels_nothing_when_the_refresh_already_ended() -> None:
    world = build_world({NEW: BAD["rolling"]})
    world.deploy("rolling")
    # the fake's refreshes finish at once, so there is no refresh to cancel on the way back
    assert ("cancel", f"{SERVICE}-asg-blue") not in world.fleet.calls
    assert world.applied().slot("blue").version == world.start.slot("blue").version


def test_a_rolling_rollback_whose_refresh_back_fails_is_not_rolled_back() -> None:
    """The restoring update succeeded, but the refresh back to v1 ended Failed: the fleet runs
    both versions, so the rollback is not confirmed and the journal keeps it open."""
    world = build_world({NEW: BAD["rolling"]})

    def refresh_back_fails(event: Any) -> None:
        if isinstance(event, events.RollbackStarted):
            world.cloud.refresh_outcome = "Failed"

    record = world.deploy("rolling", listeners=[refresh_back_fails])

    assert record.status is DeploymentStatus.FAILED
    assert any("ended Failed; its fleet may run both versions" in e for e in record.errors), record.errors
    assert world.tags()[-1].kind == "rollback" and world.tags()[-1].wait
    found = world.latest()
    assert found.open and found.awaiting_world and found.status == "rolling-back"

    # once a refresh back succeeds (an operator's, say), resume confirms and finishes it
    world.cloud.refresh_outcome = "Successful"
    asg = f"{SERVICE}-asg-{world.start.live}"
    world.cloud.refresh[asg] = RefreshStatus("ir-operator", "Successful", 100, 0)
    resumed = run(world.driver().resume(SERVICE))
    assert resumed.status is DeploymentStatus.ROLLED_BACK
    assert world.tags()[-1].kind == "restored" and not world.latest().open


def test_a_slot_that_never_becomes_healthy_fails_before_any_traffic_moves() -> None:
    world = build_world({NEW: Behaviour(healthy=False)})
    record = world.deploy("canary")

    assert record.status is DeploymentStatus.ROLLED_BACK
    failed = next(s for s in record.steps if s.outcome == "failed")
    assert failed.kind == "wait-healthy"
    assert "not healthy after 600s" in failed.reason
    # the canary's first step needs one of the ten instances (10 % of the traffic)
    assert "0/1 healthy, 1 unhealthy" in failed.reason
    assert world.clock.slept >= 600
    idle = world.start.idle
    assert all(r.weights[idle] == 0 for r in history_releases(world))
    assert world.applied() == world.start
    assert world.metrics.calls == 0  # never analysed, never validated
    assert world.http_requests == []


def test_an_alarm_on_the_new_slot_during_analysis_rolls_back(world: World) -> None:
    def raise_alarm(event: Any) -> None:
        if isinstance(event, events.StepStarted) and event.kind == "analyze":
            world.alarms.firing_names.add(f"{SERVICE}-green-p99")

    record = world.deploy("canary", listeners=[raise_alarm])

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any(f"alarm {SERVICE}-green-p99 is firing" in e for e in record.errors)
    assert world.release() == world.start


# --------------------------------------------------------------------------- rollback retries


def failing_rollbacks(times: int | None) -> Any:
    """A FakeStack.fail_when failing the first ``times`` rollback updates (None: all of them)."""
    seen = {"n": 0}

    def fail(message: str) -> bool:
        tag = decode(message)
        if tag is None or tag.phase != "rollback":
            return False
        seen["n"] += 1
        return times is None or seen["n"] <= times

    return fail


def test_a_failed_rollback_update_is_retried() -> None:
    world = build_world({NEW: BAD["blue-green"]})
    world.stack.fail_when = failing_rollbacks(1)
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert record.rollback_attempts == 2
    assert record.rolled_back_to == 1
    assert world.release() == world.start and world.applied() == world.start
    assert any("rollback attempt 1/3 failed" in e for e in record.errors)
    history = world.stack.history()
    # the retried restore, its confirmation once the world showed it, after the failed attempt
    assert [e.result for e in history[:3]] == ["succeeded", "succeeded", "failed"]
    assert world.latest().status == "rolled-back"


def test_a_rollback_that_keeps_failing_ends_failed_with_the_command_that_finishes_it() -> None:
    # no load probe: the bad version fails its bake after the switch, with all traffic on it
    world = build_world({NEW: BAD["blue-green"]}, service_changes={"validation": {"probe": {"requests": 0}}})
    world.stack.fail_when = failing_rollbacks(None)
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.FAILED
    assert record.rollback_attempts == 3
    assert record.rolled_back_to is None
    assert record.recovery == "rfs-deploy rollback --stack test --service api-service --to 1"
    for attempt in (1, 2, 3):
        assert any(f"rollback attempt {attempt}/3 failed: update failed" in e for e in record.errors)
    # the stack was left where the deployment stood: the new version live, nothing half-applied
    assert world.applied().weights["green"] == 100
    assert world.latest().status == "rolling-back"


def test_the_recovery_command_of_a_failed_rollback_works() -> None:
    world = build_world({NEW: BAD["blue-green"]})
    world.stack.fail_when = failing_rollbacks(None)
    record = world.deploy("blue-green")
    assert record.recovery is not None
    to = int(record.recovery.rsplit(" ", 1)[1])

    world.stack.fail_when = None
    again = run(world.driver().rollback(SERVICE, to_version=to))

    assert again.status is DeploymentStatus.ROLLED_BACK
    assert world.release() == world.start and world.applied() == world.start
    assert world.latest().status == "rolled-back"


# --------------------------------------------------------------------------- listener propagation


class TimelineTraffic(FakeTraffic):
    """FakeTraffic noting every production-listener read on a shared timeline."""

    def __init__(self, world: World, timeline: list[tuple[str, Any]]) -> None:
        super().__init__(world.cloud)
        self.timeline = timeline
        self.listener = world.cloud.outputs[SERVICE].listener_arn

    def forward_weights(self, listener_arn: str) -> dict[str, int]:
        weights = super().forward_weights(listener_arn)
        if listener_arn == self.listener:
            self.timeline.append(("weights", weights))
        return weights


class TimelineMetrics(FakeMetrics):
    """FakeMetrics noting, for every fetch, the weights the cloud really holds at that moment."""

    def __init__(self, world: World, timeline: list[tuple[str, Any]]) -> None:
        super().__init__(world.cloud)
        self.timeline = timeline
        self.world = world

    def read(self, sources: Sequence[SlotSource], start: float, end: float, period: int) -> Readings:
        out = self.world.cloud.outputs[SERVICE]
        applied = self.world.cloud.applied[SERVICE].weights
        arns = {out.slot(s).target_group_arn: w for s, w in applied.items()}
        self.timeline.append(("metrics", arns))
        return super().read(sources, start, end, period)


def lagging_world(lag: int) -> tuple[World, list[tuple[str, Any]]]:
    world = build_world(weight_lag_reads=lag)
    timeline: list[tuple[str, Any]] = []
    world.traffic = TimelineTraffic(world, timeline)
    world.metrics = TimelineMetrics(world, timeline)
    return world, timeline


def test_analysis_starts_only_once_the_listener_shows_the_new_weights() -> None:
    quick = build_world()
    assert quick.deploy("canary").status is DeploymentStatus.COMPLETED

    world, timeline = lagging_world(3)
    record = world.deploy("canary")

    assert record.status is DeploymentStatus.COMPLETED
    weight_changes = sum(1 for t in world.tags() if t.kind == "set-weight")
    assert weight_changes == 10  # 10 % ... 90 %, then 100 %
    # every weight change waited three polls for the listener to catch up (the promotion moves
    # no weight: the new slot already has all traffic)
    assert world.clock.slept - quick.clock.slept == 3 * VERIFY_POLL * weight_changes
    last_seen: dict[str, int] | None = None
    fetches = 0
    for kind, weights in timeline:
        if kind == "weights":
            last_seen = {arn: w for arn, w in weights.items() if w}
        else:
            fetches += 1
            assert last_seen == {arn: w for arn, w in weights.items() if w}, "analysed before the change"
    assert fetches == world.metrics.calls > 0


def test_a_change_that_never_shows_on_the_listener_fails_its_step() -> None:
    world, _ = lagging_world(VERIFY_TIMEOUT // VERIFY_POLL + 5)

    def propagation_recovers(event: Any) -> None:
        if isinstance(event, events.RollbackStarted):
            world.cloud.weight_lag_reads = 0

    record = world.deploy("canary", listeners=[propagation_recovers])

    assert record.status is DeploymentStatus.ROLLED_BACK
    failed = next(s for s in record.steps if s.outcome == "failed")
    assert failed.kind == "set-weight"
    assert f"does not show the change after {VERIFY_TIMEOUT}s" in failed.reason
    assert world.metrics.calls == 0
    assert world.release() == world.start and world.applied() == world.start


# --------------------------------------------------------------------------- data that is missing


def test_missing_metrics_extend_the_step_and_a_healthy_version_still_completes() -> None:
    quick = build_world()
    quick.deploy("blue-green")

    world = build_world()
    world.metrics.missing = 3
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert world.clock.slept - quick.clock.slept == 3 * 60
    outcomes = [v.outcome for v in record.verdicts if not v.numbers.get("probe")]
    assert outcomes.count("INCONCLUSIVE") == 3
    assert outcomes.count("PASS") == 5


def test_metrics_missing_longer_than_max_inconclusive_roll_back() -> None:
    world = build_world()
    world.metrics.missing = 100
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("not enough data: 6 windows in a row without data (limit 5)" in e for e in record.errors)
    assert world.release() == world.start and world.applied() == world.start


@pytest.mark.parametrize(("errors", "status"), [(2, "COMPLETED"), (3, "ROLLED_BACK")])
def test_metric_fetch_errors_in_a_row_roll_back_at_the_limit(errors: int, status: str) -> None:
    world = build_world()
    world.metrics.errors = errors
    record = world.deploy("blue-green")

    assert record.status.value == status
    if status == "ROLLED_BACK":
        assert any("3 metric fetch errors in a row" in e and "Rate exceeded" in e for e in record.errors)
        assert world.release() == world.start
    else:
        assert same_release(world.release(), promoted("blue-green", world.start))


# --------------------------------------------------------------------------- time


def stuck_refresh(world: World) -> Any:
    def listener(event: Any) -> None:
        if isinstance(event, events.StepStarted) and event.kind == "watch-refresh":
            asg = world.cloud.outputs[SERVICE].slot(world.start.live).asg_name
            world.cloud.refresh[asg] = RefreshStatus("ir-stuck", "InProgress", 40, 6)

    return listener


def test_a_refresh_that_never_finishes_ends_rolled_back(world: World) -> None:
    record = world.deploy("rolling", listeners=[stuck_refresh(world)])

    assert record.status is DeploymentStatus.ROLLED_BACK
    watch = next(s for s in world.driver().plan(SERVICE, NEW, "rolling")[3] if s.kind == "watch-refresh")
    assert any(f"instance refresh at 40% after {watch.timeout}s" in e for e in record.errors), record.errors
    assert ("cancel", f"{SERVICE}-asg-blue") in world.fleet.calls
    assert world.release() == world.start and world.applied() == world.start
    assert world.clock.slept >= watch.timeout


def test_waiting_beyond_the_time_budget_rolls_back() -> None:
    # blue-green plans 660 s; the allowance would be 660 s more, but deploymentTimeout caps it at 700
    world = build_world(service_changes={"deploy": {"maxDeploymentTime": 100, "deploymentTimeout": 700}})
    world.metrics.missing = 5  # five more minutes of analysis than planned: past the 700 s cap
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("exceeded its time budget" in e for e in record.errors), record.errors
    assert world.release() == world.start and world.applied() == world.start


def test_the_allowance_grows_with_the_plan() -> None:
    # maxDeploymentTime 100 s, but a 660 s plan may overrun by its own length: 5 minutes is fine
    world = build_world(service_changes={"deploy": {"maxDeploymentTime": 100}})
    world.metrics.missing = 5
    assert world.deploy("blue-green").status is DeploymentStatus.COMPLETED


# --------------------------------------------------------------------------- A/B


def test_ab_equal_versions_promote_b(world: World) -> None:
    record = world.deploy("ab-test")

    assert record.status is DeploymentStatus.COMPLETED
    assert record.decision is not None and record.decision.startswith("B")
    assert same_release(world.release(), promoted("ab-test", world.start))
    assert world.release().variants is None and world.release().stickiness is None


def test_ab_worse_b_keeps_a() -> None:
    world = build_world({NEW: Behaviour(error_rate=0.02)})
    record = world.deploy("ab-test")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert record.decision is not None and record.decision.startswith("A")
    assert "keep A" in record.decision
    assert record.rolled_back_to == 1
    assert world.release() == world.start and world.applied() == world.start
    assert world.latest().status == "rolled-back"
    finished = [e for e in world.events if isinstance(e, events.DeploymentFinished)]
    assert finished[-1].reason.startswith("kept A")


# --------------------------------------------------------------------------- slow worlds


def test_a_slow_starting_slot_is_waited_for(world: World) -> None:
    world.cloud.behaviours[NEW] = Behaviour(healthy=False)
    began = world.clock.now()

    def warm_up(now: float) -> None:
        if now - began >= 240:
            world.cloud.behaviours[NEW] = Behaviour()

    world.clock.listeners.append(warm_up)
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    waited = next(s for s in record.steps if s.kind == "wait-healthy")
    assert waited.reason == "10/10 targets healthy after 240s"


def test_too_little_traffic_per_window_is_pooled_never_a_thin_pass() -> None:
    world = build_world()
    world.cloud.requests_per_minute = 50  # below minRequests (100) in every window
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    # the load probe passed the slot before the switch (it sends its own requests); no thin bake
    # window passed on its own: the first pass judged two windows' requests pooled
    bake = [v for v in record.verdicts if not v.numbers.get("probe")]
    assert bake[0].outcome == "INCONCLUSIVE" and "only 50 requests" in bake[0].reason
    passed = [v for v in bake if v.outcome == "PASS"]
    assert passed and passed[0].numbers["pooled_requests"] == 100, passed[0].numbers


def test_a_step_its_traffic_leaves_undecided_pauses_for_a_person() -> None:
    world = build_world()
    world.cloud.requests_per_minute = 5  # six windows pool 30 requests: never minRequests
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.IN_PROGRESS and record.paused is not None, record.errors
    assert "undecided" in record.paused["reason"] and "waiting for a person" in record.paused["reason"]
    bake = next(s for s in record.steps if s.kind == "analyze")
    assert bake.outcome == "paused" and not record.errors


def test_on_inconclusive_rollback_rolls_an_undecided_step_back() -> None:
    world = build_world()
    world.cloud.requests_per_minute = 5
    record = world.deploy("blue-green", overrides={"analysis": {"onInconclusive": "rollback"}})

    assert record.status is DeploymentStatus.ROLLED_BACK
    rolled = [e for e in record.errors if "not enough data" in e and "onInconclusive: rollback" in e]
    assert rolled, record.errors


# --------------------------------------------------------------------------- more than one release


def test_a_second_release_rolls_back_to_the_end_of_the_first(world: World) -> None:
    assert world.deploy("blue-green").status is DeploymentStatus.COMPLETED
    first_end = world.stack.history()[0].version
    after_first = world.release()
    world.cloud.behaviours["v1.0.0"] = Behaviour(error_rate=0.03)  # going back to v1 goes badly

    record = world.deploy("canary", version="v1.0.0")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert record.rolled_back_to == first_end
    assert world.release() == after_first and world.applied() == after_first
    assert after_first.live == "green" and after_first.slot("green").version == NEW


def test_a_canary_with_stickiness_verifies_it_and_drops_it_at_full_traffic() -> None:
    world = build_world(service_changes={"strategy": {"stickinessDuration": 3600}})
    record = world.deploy("canary")

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    sticky = [e.release[SERVICE].stickiness for e in world.stack.history() if e.release]
    assert 3600 in sticky
    assert world.release().stickiness is None


def test_a_wrong_version_answering_on_the_test_listener_fails_validation(world: World) -> None:
    import httpx

    def stale_image(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/version":
            return httpx.Response(200, json={"version": "v1.0.0"})
        return httpx.Response(200, text="ok")

    world.transport = lambda: httpx.MockTransport(stale_image)  # type: ignore[method-assign]
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("version mismatch: expected v2.0.0, got v1.0.0" in e for e in record.errors), record.errors
    assert all((e.release or {})[SERVICE].weights["green"] == 0 for e in world.stack.history())


def test_a_stack_locked_mid_deployment_stops_the_driver_and_resume_continues(world: World) -> None:
    from rfs_deploy.errors import StackBusy

    def someone_else(event: Any) -> None:
        if isinstance(event, events.StepStarted) and event.index == 5:
            world.stack.locked_by = "a hand-run pulumi up"

    with pytest.raises(StackBusy, match="locked by another update"):
        world.deploy("canary", listeners=[someone_else])
    assert world.latest().open  # nothing was rolled back over the other update's head

    world.stack.locked_by = None
    record = run(world.driver().resume(SERVICE))
    assert record.status is DeploymentStatus.COMPLETED
    assert same_release(world.release(), promoted("canary", world.start))
