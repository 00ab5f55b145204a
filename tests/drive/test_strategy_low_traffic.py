"""Each strategy on low and undecided traffic, and through a shared incident (issue 15, "Per
strategy"): rolling holds its instance refresh at a checkpoint while its windows are undecided and
judges the slot against its own minutes before the refresh; an A/B test declares no winner on
windows too thin to tell and stops early when B is past the hard limit; blue-green never rolls back
after its switch for lack of data. On the fakes at the Protocol seams, with a scripted instance
refresh where the test needs one that takes time."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from drive_world import NEW, OLD, SERVICE, World, build_world, promoted, run, same_release

from rfs_deploy.config.model import Analysis
from rfs_deploy.config.strategies.ab_test import ABTest
from rfs_deploy.drive.ab import decide_ab
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.drive.rules import Window
from rfs_deploy.metrics.base import Readings, SlotMetrics, SlotSource, aggregate
from rfs_deploy.readback import RefreshStatus
from rfs_deploy.testing import Behaviour

# --------------------------------------------------------------------------- a refresh that takes time


class ScriptedRefresh:
    """FleetControl whose refresh replaces ``batch`` instances every ``batch_seconds`` of the
    clock (pausing at a checkpoint after each, as the program asks), stops when cancelled and
    goes on from where it stopped when started again. The refresh back to the old version (a
    rollback's) ends at once."""

    def __init__(self, world: World, batch: int = 2, batch_seconds: int = 120) -> None:
        self.world = world
        self.batch = batch
        self.batch_seconds = batch_seconds
        self.calls: list[tuple[str, str]] = []
        self.instances = world.start.slot(world.start.live).capacity
        #: Instances on the new version; those replaced before the current refresh started.
        self.replaced = 0
        self.base = 0
        self.started_at: float | None = None
        self.status = "none"
        self.number = 0
        self._seen: str | None = None

    def _sync(self, asg: str) -> None:
        started = self.world.cloud.refresh.get(asg)
        if started is not None and started.refresh_id != self._seen:
            self._seen = started.refresh_id
            live = self.world.applied()
            if live.slot(live.live).version == NEW:
                self.replaced = self.base = 0
                self._start()
            else:
                self.replaced, self.status = 0, "Successful"  # the refresh back
        if self.status == "InProgress" and self.started_at is not None:
            batches = math.floor((self.world.clock.now() - self.started_at) / self.batch_seconds)
            self.replaced = min(self.instances, self.base + self.batch * batches)
            if self.replaced >= self.instances:
                self.status = "Successful"

    def _start(self) -> None:
        self.number += 1
        self.started_at = self.world.clock.now()
        self.status = "InProgress"

    def latest_refresh(self, asg_name: str) -> RefreshStatus | None:
        self._sync(asg_name)
        if self.status == "none":
            return None
        total = self.instances - self.base
        done = self.replaced - self.base
        pct = 100 if total <= 0 else math.floor(100 * done / total)
        return RefreshStatus(f"ir-{self.number}", self.status, pct, self.instances - self.replaced)

    def cancel_refresh(self, asg_name: str) -> None:
        self._sync(asg_name)
        self.calls.append(("cancel", asg_name))
        if self.status == "InProgress":
            self.status = "Cancelled"

    def resume_refresh(self, asg_name: str) -> str:
        self._sync(asg_name)
        self.calls.append(("resume", asg_name))
        self.base = self.replaced
        self._start()
        return f"ir-{self.number}"


def rolling_world(rpm: int, behaviours: dict[str, Behaviour] | None = None) -> tuple[World, ScriptedRefresh]:
    world = build_world(behaviours)
    world.cloud.requests_per_minute = rpm
    fleet = ScriptedRefresh(world)
    world.fleet = fleet  # type: ignore[assignment]
    return world, fleet


def promote(world: World) -> DeploymentRecord:
    return run(world.driver().promote(SERVICE))


def held(record: DeploymentRecord) -> bool:
    return record.status is DeploymentStatus.IN_PROGRESS and record.paused is not None


# --------------------------------------------------------------------------- rolling


def test_rolling_on_thin_traffic_holds_its_refresh_at_the_first_checkpoint_then_goes_on() -> None:
    world, fleet = rolling_world(rpm=5)  # five requests a minute: no window reaches minRequests
    record = world.deploy("rolling")

    assert held(record), record.errors
    assert record.paused is not None and "waiting for a person" in record.paused["reason"]
    assert "instance refresh is held" in record.paused["reason"]
    # the refresh stopped at its first checkpoint: two of ten instances, not the whole fleet
    assert ("cancel", world.cloud.outputs[SERVICE].slot("blue").asg_name) in fleet.calls
    assert fleet.replaced == 2 and fleet.status == "Cancelled"
    still = world.clock.now()
    world.clock.advance(3600)
    assert fleet.latest_refresh(world.cloud.outputs[SERVICE].slot("blue").asg_name) is not None
    assert fleet.replaced == 2, "a held refresh does not advance"
    assert world.clock.now() > still

    # a person promotes; with traffic back the refresh starts again from its checkpoint
    world.cloud.requests_per_minute = 1000
    done = promote(world)
    assert done.status is DeploymentStatus.COMPLETED, done.errors
    assert [c for c, _ in fleet.calls].count("resume") == 1
    assert fleet.replaced == fleet.instances
    assert same_release(world.release(), promoted("rolling", world.start))


def test_rolling_on_thin_traffic_with_on_inconclusive_rollback_rolls_back_at_the_checkpoint() -> None:
    world, _ = rolling_world(rpm=5)
    record = world.deploy("rolling", overrides={"analysis": {"onInconclusive": "rollback"}})

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("onInconclusive: rollback" in e for e in record.errors), record.errors
    assert world.release() == world.start


def test_rolling_on_plenty_of_traffic_never_holds_its_refresh() -> None:
    world, fleet = rolling_world(rpm=1000)
    record = world.deploy("rolling")

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert fleet.calls == [] and fleet.replaced == fleet.instances


class BeforeTheRefresh:
    """Metrics of the fakes, except that a window which ends before the refresh began shows the
    old version's error rate (the fakes answer with what runs now)."""

    name = "before-the-refresh"

    def __init__(self, world: World, fleet: ScriptedRefresh) -> None:
        self.world, self.fleet = world, fleet

    def _began(self) -> float | None:
        """When the update that moved the live slot to the new version ran (the refresh began)."""
        for entry in reversed(self.world.stack.history()):
            state = entry.release.get(SERVICE)
            if state is not None and state.slot(state.live).version == NEW:
                return entry.start_time
        return None

    def read(self, sources: Sequence[SlotSource], start: float, end: float, period: int) -> Readings:
        began = self._began()
        if began is None or end > began:
            return self.world.metrics.read(sources, start, end, period)
        minutes = max(1, round((end - start) / 60))
        requests = self.world.cloud.requests_per_minute * minutes
        old = self.world.cloud.behaviour(OLD)
        slots = {
            s.slot: aggregate(
                [float(requests)], [float(round(requests * old.error_rate))], [old.p99], [old.cpu]
            )
            for s in sources
        }
        return Readings(slots)


def deploy_with_history(world: World, fleet: ScriptedRefresh) -> DeploymentRecord:
    from rfs_deploy.drive.driver import Driver

    seams = world.seams()
    seams.metrics = BeforeTheRefresh(world, fleet)
    return run(Driver(seams).deploy(SERVICE, NEW, "rolling"))


def test_rolling_judges_the_refreshed_slot_against_its_minutes_before_the_refresh() -> None:
    # 3 % 5xx is under maxErrorRate (5 %), but six times the old version's 0.5 %
    world, fleet = rolling_world(rpm=1000, behaviours={NEW: Behaviour(error_rate=0.03)})
    record = deploy_with_history(world, fleet)

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("before the refresh" in e for e in record.errors), record.errors
    assert fleet.replaced < fleet.instances
    assert world.release() == world.start


def test_a_healthy_rolling_release_passes_its_pre_refresh_comparison() -> None:
    world, fleet = rolling_world(rpm=1000)
    record = deploy_with_history(world, fleet)

    assert record.status is DeploymentStatus.COMPLETED, record.errors


def outage_at_second_batch(world: World, fleet: ScriptedRefresh, minutes: int = 2) -> list[float]:
    """Both versions fail half their requests (and the slot's 5xx alarm fires) for ``minutes``
    once two of ten instances are new; returns [when it began] once it has."""
    asg = world.cloud.outputs[SERVICE].slot("blue")
    outage: list[float] = []

    def upstream(now: float) -> None:
        if fleet.started_at is None or fleet.status == "none":
            return
        if not outage and fleet.replaced == 2:
            outage.append(now)
        sick = bool(outage) and now - outage[0] < 60 * minutes
        bad = Behaviour(error_rate=0.5)
        world.cloud.behaviours.update({OLD: bad, NEW: bad} if sick else {OLD: Behaviour(), NEW: Behaviour()})
        world.alarms.firing_names = {asg.alarm_names[0]} if sick else set()

    world.clock.listeners.append(upstream)
    return outage


def test_rolling_holds_through_a_shared_incident_instead_of_rolling_back() -> None:
    # both versions fail half their requests for two minutes while two of ten instances are new:
    # the old instances fail too, so it is nobody's release
    world, fleet = rolling_world(rpm=1000)
    asg = world.cloud.outputs[SERVICE].slot("blue")
    outage = outage_at_second_batch(world, fleet)
    record = world.deploy("rolling")

    assert outage, "the outage never started"
    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert any("shared incident" in v.reason for v in record.verdicts)
    assert ("cancel", asg.asg_name) in fleet.calls and ("resume", asg.asg_name) in fleet.calls
    assert fleet.replaced == fleet.instances


def test_rolling_still_rolls_back_a_release_the_new_instances_explain() -> None:
    # only the new version fails: at 20 % of the fleet 50 % 5xx on it is 10 % of the slot's
    world, fleet = rolling_world(rpm=1000)

    def regress(now: float) -> None:
        if fleet.replaced >= 2:
            world.cloud.behaviours[NEW] = Behaviour(error_rate=0.1)

    world.clock.listeners.append(regress)
    record = world.deploy("rolling")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert not any("shared incident" in v.reason for v in record.verdicts)
    assert world.release() == world.start


# --------------------------------------------------------------------------- A/B


def ab_world(rpm: int) -> World:
    world = build_world()
    world.cloud.requests_per_minute = rpm
    return world


def test_ab_on_too_little_traffic_declares_no_winner_and_waits_for_a_person() -> None:
    world = ab_world(rpm=6)  # three requests a minute per variant: 60 each in 20 minutes
    record = world.deploy("ab-test")

    assert held(record), record.errors
    assert record.decision is not None and record.decision.startswith("undecided")
    assert world.release().variants is not None, "both variants stay live while a person decides"
    assert any(v.outcome == "UNDECIDED" for v in record.verdicts)

    done = promote(world)
    assert done.status is DeploymentStatus.COMPLETED, done.errors
    assert same_release(world.release(), promoted("ab-test", world.start))


@pytest.mark.parametrize(
    ("setting", "status", "release"),
    [
        ("rollback", DeploymentStatus.ROLLED_BACK, "start"),
        ("promote", DeploymentStatus.COMPLETED, "promoted"),
    ],
)
def test_an_undecided_ab_test_ends_as_on_inconclusive_says(
    setting: str, status: DeploymentStatus, release: str
) -> None:
    world = ab_world(rpm=6)
    record = world.deploy("ab-test", overrides={"analysis": {"onInconclusive": setting}})

    assert record.status is status, record.errors
    expected = world.start if release == "start" else promoted("ab-test", world.start)
    assert same_release(world.release(), expected)


def test_ab_declares_no_winner_on_thin_windows_whose_errors_cannot_show_b_is_under_the_limit() -> None:
    thin = [
        Window(SlotMetrics(12, 1 if i == 3 else 0, 0.2, 40.0), SlotMetrics(12, 0, 0.2, 40.0))
        for i in range(10)
    ]
    decision = decide_ab(thin, 50, Analysis())

    assert decision.winner is None and decision.reason.startswith("undecided")
    assert "under 5.00%" in decision.reason


def test_ab_pools_thin_windows_into_judged_ones() -> None:
    thin = [Window(SlotMetrics(60, 0, 0.2, 40.0), SlotMetrics(60, 0, 0.2, 40.0)) for _ in range(20)]
    decision = decide_ab(thin, 50, Analysis())

    assert decision.winner == "B", decision.reason
    assert decision.numbers["windows"] == 20 and decision.numbers["windows_judged"] == 10


def test_ab_stops_early_when_b_is_past_the_hard_limit_on_thin_windows() -> None:
    world = ab_world(rpm=6)

    def b_breaks(now: float) -> None:
        if world.applied().variants is not None:
            world.cloud.behaviours[NEW] = Behaviour(error_rate=0.5)

    world.clock.listeners.append(b_breaks)
    record = world.deploy("ab-test")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("past the hard limit" in e for e in record.errors), record.errors
    decide = next(s for s in record.steps if s.kind == "decide")
    assert decide.ended_at is not None and decide.ended_at - decide.started_at <= 300
    assert world.release() == world.start


# --------------------------------------------------------------------------- blue-green


def test_blue_green_after_its_switch_pauses_on_thin_traffic_and_never_rolls_back() -> None:
    world = build_world()
    world.cloud.requests_per_minute = 5
    record = world.deploy("blue-green")

    assert held(record), record.errors
    applied = world.applied()
    assert applied.weights[applied.idle] == 100, "paused after the switch, all traffic on the new slot"
    assert record.rollback_attempts == 0 and not record.errors

    done = promote(world)
    assert done.status is DeploymentStatus.COMPLETED, done.errors
    assert same_release(world.release(), promoted("blue-green", world.start))


def shared_outage_in_ab(world: World, minutes: int = 2, b_rate: float = 0.5) -> list[float]:
    """Once the A/B split is live, both variants fail half their requests (B ``b_rate``) and B's
    5xx alarm fires for ``minutes``; returns [when it began] once it has."""
    b_alarm = world.cloud.outputs[SERVICE].slot("green").alarm_names[0]
    outage: list[float] = []

    def upstream(now: float) -> None:
        if world.applied().variants is None:
            return
        if not outage:
            outage.append(now + 120)  # two healthy minutes of the test first
        sick = outage[0] <= now < outage[0] + 60 * minutes
        world.cloud.behaviours.update(
            {OLD: Behaviour(error_rate=0.5), NEW: Behaviour(error_rate=b_rate)}
            if sick
            else {OLD: Behaviour(), NEW: Behaviour()}
        )
        world.alarms.firing_names = {b_alarm} if sick else set()

    world.clock.listeners.append(upstream)
    return outage


def test_ab_holds_through_a_shared_outage_and_decides_on_the_minutes_around_it() -> None:
    world = ab_world(rpm=1000)
    outage = shared_outage_in_ab(world)
    record = world.deploy("ab-test")

    assert outage, "the outage never started"
    assert record.status is DeploymentStatus.COMPLETED, record.errors
    holds = [v for v in record.verdicts if "shared incident" in v.reason]
    assert len(holds) >= 2 and {v.outcome for v in holds} == {"INCONCLUSIVE"}
    assert all("A fails too" in v.reason for v in holds)
    assert any(v.reason.startswith("alarm ") for v in holds), "B's firing alarm was held, not obeyed"
    assert record.decision is not None and record.decision.startswith("B"), record.decision
    decide = next(s for s in record.steps if s.kind == "decide")
    assert decide.ended_at is not None
    # the held minutes were added to the test, not taken from it
    duration = ABTest.model_fields["duration"].default  # the test's own, with no override
    assert decide.ended_at - decide.started_at >= duration + 60 * len(holds)


def test_ab_still_rolls_back_a_b_worse_than_a_during_a_shared_outage() -> None:
    world = ab_world(rpm=1000)
    shared_outage_in_ab(world, b_rate=0.9)
    record = world.deploy("ab-test")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert not any("shared incident" in v.reason for v in record.verdicts)
    assert world.release() == world.start
