"""Cancellation on the shipped fakes: what a cancel request does at each kind of point.

A request is what the command line's SIGINT/SIGTERM handler makes (``Cancellation.request``); the
tests make it from an event listener at a chosen step, or cancel the asyncio task of a deploy.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
from drive_world import NEW, SERVICE, World, build_world, promoted, run, same_release

from rfs_deploy.drive import events, journal
from rfs_deploy.drive.cancel import Cancellation, DeploymentCancelled
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.records import DeploymentStatus, RecordStore
from rfs_deploy.testing import ManualClock

TERM, INT = int(signal.SIGTERM), int(signal.SIGINT)


def request_at(cancellation: Cancellation, index: int, signum: int = TERM, times: int = 1) -> Any:
    """A listener that asks to cancel when plan step ``index`` (0-based) starts."""

    def listener(event: Any) -> None:
        if isinstance(event, events.StepStarted) and event.index == index:
            for _ in range(times):
                cancellation.request(signum)

    return listener


def driver(
    world: World, cancellation: Cancellation, *listeners: Any, records: RecordStore | None = None
) -> Driver:
    seams = world.seams(list(listeners), records=records)
    seams.cancellation = cancellation
    return Driver(seams)


def step_updates(world: World) -> list[tuple[int, str, str]]:
    """(step index, phase, result) of every tagged update, oldest first."""
    out = []
    for entry in reversed(world.stack.history()):
        tag = journal.decode(entry.message)
        if tag is not None:
            out.append((tag.step, tag.phase, entry.result))
    return out


def assert_back_at_checkpoint(world: World) -> None:
    assert same_release(world.release(), world.start)
    assert same_release(world.applied(), world.start)


# --------------------------------------------------------------------------- abort (the default)


def test_a_request_during_a_stack_change_lets_the_update_finish_then_aborts(world: World) -> None:
    cancel = Cancellation()
    # step 6 of the canary (index 5) grows the idle slot for 20 %: the request comes as it starts
    record = run(driver(world, cancel, request_at(cancel, 5)).deploy(SERVICE, NEW, "canary"))

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert cancel.outcome == "rolled-back"
    updates = step_updates(world)
    # the update in flight ran to its end (never abandoned), nothing after it but the abort
    assert (5, "step", "succeeded") in updates
    assert updates[-1][1:] == ("abort", "succeeded")
    assert not any(step > 5 for step, phase, _ in updates if phase == "step")
    assert_back_at_checkpoint(world)
    assert world.latest().status == "aborted"
    assert any("cancelled by SIGTERM before step 7/27" in e for e in record.errors)
    finished = [e for e in world.events if isinstance(e, events.DeploymentFinished)]
    assert finished[-1].reason.startswith("cancelled: cancelled by SIGTERM")


def test_a_request_during_a_bake_interrupts_the_wait(world: World) -> None:
    cancel = Cancellation()
    started: dict[int, float] = {}

    def when(event: Any) -> None:
        if isinstance(event, events.StepStarted):
            started[event.index] = world.clock.now()

    # index 4: the first 60 s analysis of the canary
    record = run(driver(world, cancel, when, request_at(cancel, 4, INT)).deploy(SERVICE, NEW, "canary"))

    bake = next(s for s in record.steps if s.index == 4)
    assert bake.outcome == "cancelled"
    assert bake.ended_at is not None and bake.ended_at - started[4] < 60
    assert not record.verdicts or all(v.step != 4 for v in record.verdicts)
    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("cancelled by SIGINT" in e for e in record.errors)
    assert_back_at_checkpoint(world)


@pytest.mark.parametrize(
    ("strategy", "index"),
    [("blue-green", 3), ("blue-green", 7), ("rolling", 1), ("rolling", 2), ("ab-test", 4), ("ab-test", 5)],
)
def test_every_strategy_ends_back_at_its_checkpoint(strategy: str, index: int) -> None:
    world = build_world()
    cancel = Cancellation()

    record = run(driver(world, cancel, request_at(cancel, index)).deploy(SERVICE, NEW, strategy))

    assert record.status is DeploymentStatus.ROLLED_BACK, record.errors
    assert cancel.outcome == "rolled-back"
    assert record.rolled_back_to == 1
    assert_back_at_checkpoint(world)
    assert world.latest().status == "aborted"


def test_a_request_on_the_last_step_still_aborts(world: World) -> None:
    cancel = Cancellation()

    record = run(driver(world, cancel, request_at(cancel, 26)).deploy(SERVICE, NEW, "canary"))

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("after the last step" in e for e in record.errors)
    assert_back_at_checkpoint(world)


def test_an_update_the_engine_cancelled_on_the_same_signal_counts_as_the_cancel(world: World) -> None:
    """With the real CLI a terminal's Ctrl-C reaches ``pulumi`` too: it cancels its update, which
    fails; the driver then acts on the cancel (here: leave), not on a step failure."""
    cancel = Cancellation(on_cancel="leave")
    world.stack.fail_when = lambda message: cancel.requested and "phase=step" in message

    record = run(driver(world, cancel, request_at(cancel, 5)).deploy(SERVICE, NEW, "canary"))

    assert cancel.outcome == "left"
    assert record.status is DeploymentStatus.IN_PROGRESS
    assert step_updates(world)[-1] == (5, "step", "failed")
    found = world.latest()
    # open after its last completed change (10 %): resume observes that step again, then goes on
    assert found.open and found.interrupted and found.next_step == 4
    world.stack.fail_when = None
    resumed = run(world.driver().resume(SERVICE))
    assert resumed.status is DeploymentStatus.COMPLETED
    assert same_release(world.release(), promoted("canary", world.start))


def test_a_failed_judgement_while_a_cancel_is_pending_still_rolls_back() -> None:
    from rfs_deploy.testing import Behaviour

    world = build_world({NEW: Behaviour(error_rate=0.3)})
    cancel = Cancellation(on_cancel="leave")

    def judged(event: Any) -> None:
        if isinstance(event, events.Tick) and event.outcome == "FAIL":
            cancel.request(TERM)

    record = run(driver(world, cancel, judged).deploy(SERVICE, NEW, "canary"))

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert_back_at_checkpoint(world)


# --------------------------------------------------------------------------- nothing changed yet


def test_a_request_before_the_operation_starts_refuses_it(world: World) -> None:
    cancel = Cancellation()
    cancel.request(TERM)

    with pytest.raises(
        DeploymentCancelled, match="before the operation started; nothing was changed"
    ) as caught:
        run(driver(world, cancel).deploy(SERVICE, NEW, "canary"))

    assert caught.value.exit_code == 143
    assert world.stack.updates == 0


def test_a_request_before_the_first_step_changes_nothing(world: World) -> None:
    cancel = Cancellation()
    world.hooks.pre_deployment.append(lambda _ctx: cancel.request(TERM))

    record = run(driver(world, cancel).deploy(SERVICE, NEW, "canary"))

    assert cancel.outcome == "untouched"
    assert record.status is DeploymentStatus.ROLLED_BACK
    assert world.stack.updates == 0
    assert "nothing was changed" in cancel.summary()


# --------------------------------------------------------------------------- leave


def test_leave_stops_at_the_safe_point_and_resume_completes(tmp_path: Path, world: World) -> None:
    records = RecordStore(tmp_path)
    cancel = Cancellation(on_cancel="leave")

    record = run(driver(world, cancel, request_at(cancel, 7), records=records).deploy(SERVICE, NEW, "canary"))

    assert cancel.outcome == "left"
    assert record.status is DeploymentStatus.IN_PROGRESS
    found = world.latest()
    assert found.open and found.next_step == 7
    weights = world.applied().weights
    assert weights[world.start.idle] == 20  # left where the canary stood
    resume = f"rfs-deploy resume --stack test --service {SERVICE}"
    abort = f"rfs-deploy abort --stack test --service {SERVICE}"
    assert record.recovery is not None and resume in record.recovery and abort in record.recovery
    assert resume in cancel.summary() and abort in cancel.summary()

    resumed = run(Driver(world.seams(records=records)).resume(SERVICE))
    assert resumed.status is DeploymentStatus.COMPLETED
    assert resumed.recovery is None
    assert same_release(world.release(), promoted("canary", world.start))


# --------------------------------------------------------------------------- second signal, grace


def test_a_second_signal_before_the_rollback_starts_leaves_it_to_abort(world: World) -> None:
    cancel = Cancellation()

    record = run(driver(world, cancel, request_at(cancel, 5, times=2)).deploy(SERVICE, NEW, "canary"))

    assert cancel.outcome == "stopped"
    assert record.status is DeploymentStatus.FAILED
    assert record.recovery == f"rfs-deploy abort --stack test --service {SERVICE}"
    assert world.latest().open
    assert "a second signal (SIGTERM)" in record.errors[-1]

    aborted = run(world.driver().abort(SERVICE))
    assert aborted.status is DeploymentStatus.ROLLED_BACK
    assert_back_at_checkpoint(world)


def test_a_second_signal_during_the_rollback_stops_right_after_its_update() -> None:
    world = build_world(weight_lag_reads=2)  # each listener change takes two polls to show
    cancel = Cancellation()

    def again(event: Any) -> None:
        if isinstance(event, events.RollbackStarted):
            cancel.request(INT)

    record = run(driver(world, cancel, request_at(cancel, 6), again).deploy(SERVICE, NEW, "canary"))

    assert cancel.outcome == "stopped"
    assert record.status is DeploymentStatus.FAILED
    # the abort's update ran to its end; its verification wait is what the second signal stopped
    assert step_updates(world)[-1] == (0, "abort", "succeeded")
    # the journal keeps the abort open until the world is confirmed back: resume finishes it
    assert record.recovery == f"rfs-deploy resume --stack test --service {SERVICE}"
    assert world.latest().open and world.latest().awaiting_world
    assert any("abort stopped right after the update in flight: a second signal" in e for e in record.errors)
    assert "NOT confirmed back at its checkpoint (a second signal (SIGINT))" in cancel.summary()

    assert "the check that the load balancer and instances show it did not finish" in record.errors[-1]

    # the recovery command confirms the stack runs the checkpoint's release state
    restored = run(world.driver().resume(SERVICE))
    assert restored.status is DeploymentStatus.ROLLED_BACK
    assert restored.deployment_id == record.deployment_id
    assert step_updates(world)[-1] == (0, "abort", "succeeded")
    assert not world.latest().open
    assert_back_at_checkpoint(world)


class WallClock(ManualClock):
    """Virtual time whose sleeps also take a little wall-clock time, as a real wait does."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0.01)
        await super().sleep(seconds)


def test_the_grace_period_bounds_a_rollback_that_keeps_waiting() -> None:
    # the listener never shows the abort's weights in time: the rollback polls until grace runs out
    world = build_world()
    world.clock = WallClock(world.clock.now())
    world.stack.clock = world.clock.now
    cancel = Cancellation(grace=0.3)

    def lag_from_now_on(event: Any) -> None:
        if isinstance(event, events.RollbackStarted):
            world.cloud.weight_lag_reads = 10_000

    record = run(driver(world, cancel, request_at(cancel, 6), lag_from_now_on).deploy(SERVICE, NEW, "canary"))

    assert cancel.outcome == "stopped"
    assert record.status is DeploymentStatus.FAILED
    assert any("the cancel grace period of 0.3s ran out" in e for e in record.errors)
    # its restoring update succeeded but the weights never showed: the abort stays open
    assert record.recovery == f"rfs-deploy resume --stack test --service {SERVICE}"
    assert world.latest().awaiting_world


def test_a_zero_grace_period_starts_no_rollback(world: World) -> None:
    cancel = Cancellation(grace=0)

    record = run(driver(world, cancel, request_at(cancel, 5)).deploy(SERVICE, NEW, "canary"))

    assert cancel.outcome == "stopped"
    assert record.recovery == f"rfs-deploy abort --stack test --service {SERVICE}"
    assert not any(phase == "abort" for _, phase, _ in step_updates(world))


# --------------------------------------------------------------------------- requested rollbacks


def test_a_first_signal_does_not_interrupt_an_abort(world: World) -> None:
    leave = Cancellation(on_cancel="leave")
    run(driver(world, leave, request_at(leave, 6)).deploy(SERVICE, NEW, "canary"))
    cancel = Cancellation()

    def during(event: Any) -> None:
        if isinstance(event, events.RollbackStarted):
            cancel.request(TERM)

    world.cloud.weight_lag_reads = 2  # the abort has to wait for the listener
    record = run(driver(world, cancel, during).abort(SERVICE))

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert cancel.outcome is None
    assert "had finished what it was doing (ROLLED_BACK)" in cancel.summary()
    assert_back_at_checkpoint(world)


# --------------------------------------------------------------------------- asyncio cancellation


def test_cancelling_the_task_of_a_deploy_rolls_back_then_raises(tmp_path: Path, world: World) -> None:
    records = RecordStore(tmp_path)
    seams = world.seams(records=records)
    holder: dict[str, asyncio.Task[Any]] = {}

    def cancel_task(event: Any) -> None:
        if isinstance(event, events.StepStarted) and event.index == 6:
            holder["task"].cancel()

    seams.listeners.append(cancel_task)

    async def main() -> None:
        holder["task"] = asyncio.ensure_future(Driver(seams).deploy(SERVICE, NEW, "canary"))
        await holder["task"]

    with pytest.raises(asyncio.CancelledError):
        run(main())

    assert_back_at_checkpoint(world)
    assert world.latest().status == "aborted"
    (record,) = records.all()
    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("cancelled by cancellation" in e for e in record.errors)
    assert seams.cancellation is None  # the operation's own request does not outlive it


def test_a_timeout_around_a_deploy_still_times_out_after_the_rollback(world: World) -> None:
    world.clock = WallClock(world.clock.now())
    world.stack.clock = world.clock.now
    holder: dict[str, asyncio.Timeout] = {}

    def time_is_up(event: Any) -> None:
        if isinstance(event, events.StepStarted) and event.index == 6:
            holder["timeout"].reschedule(asyncio.get_running_loop().time())

    seams = world.seams([time_is_up])

    async def main() -> None:
        async with asyncio.timeout(None) as holder["timeout"]:
            await Driver(seams).deploy(SERVICE, NEW, "canary")

    with pytest.raises(TimeoutError):
        run(main())

    assert_back_at_checkpoint(world)
    assert world.latest().status == "aborted"


def test_cancelling_a_production_deployer_task_ends_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's Python API on the sandbox: ``task.cancel()`` during validation (step 3)."""
    from rfs_deploy import seed_support
    from rfs_deploy.deployment import DeploymentConfig, DeploymentStrategy, ProductionDeployer

    monkeypatch.setenv("RFS_DEPLOY_BACKEND", "sim")
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("RFS_DEPLOY_PROJECT", str(Path(__file__).resolve().parents[2]))
    monkeypatch.delenv("RFS_DEPLOY_SCENARIO", raising=False)
    holder: dict[str, asyncio.Task[Any]] = {}

    def cancel_the_task(_context: Any) -> bool:
        holder["task"].cancel()
        return True

    config = DeploymentConfig(strategy=DeploymentStrategy.CANARY, validation_hooks=[cancel_the_task])
    deployer = ProductionDeployer(config)

    async def main() -> None:
        holder["task"] = asyncio.ensure_future(deployer.deploy("v2.0.0"))
        await holder["task"]

    try:
        with pytest.raises(asyncio.CancelledError):
            run(main())
        (record, *_) = deployer.get_deployment_history()
        assert record.status is DeploymentStatus.ROLLED_BACK
        assert any("cancelled by cancellation" in e for e in record.errors)
        seams = seed_support.seams_for("production")
        found = journal.latest_deployment(seams.backend.history(), record.service)
        assert found is not None and found.status == "aborted"
        release = seams.backend.read_config().release[record.service]
        assert release.slot(release.live).version == "v1.0.0"
        assert release.weights[release.live] == 100 and release.slot(release.idle).capacity == 0
    finally:
        seed_support.reset()
