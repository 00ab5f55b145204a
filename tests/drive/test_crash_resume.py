"""Crash safety (SPEC D5): kill the driver anywhere; a new process's resume or abort ends consistent.

The durable world is the FakeStack (config and history) and the FakeCloud; a "new process" is a
new Driver over new Seams with no record store, so it knows only what stack history tells it.
The crash is a BaseException raised from an event listener at a step boundary (or from inside a
stack update), so nothing in the runner can catch it — as when the process is killed.
"""

from __future__ import annotations

from typing import Any

import pytest
from drive_world import SERVICE, STRATEGIES, Crash, World, build_world, promoted, run, same_release

from rfs_deploy.drive import events
from rfs_deploy.drive.journal import decode
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.drive.stack import VERIFY_POLL, VERIFY_TIMEOUT
from rfs_deploy.drive.steps import Change
from rfs_deploy.errors import InvalidInput
from rfs_deploy.testing import Behaviour


def plan_kinds(strategy: str) -> list[str]:
    steps = build_world().driver().plan(SERVICE, "v2.0.0", strategy)[3]
    return [s.kind for s in steps]


PLANS = {strategy: plan_kinds(strategy) for strategy in STRATEGIES}
BOUNDARIES = [(strategy, k) for strategy in STRATEGIES for k in range(len(PLANS[strategy]) + 1)]


def crash_at_boundary(k: int, total: int) -> Any:
    """Kill the driver just before step ``k`` starts (``k == total``: right after the last step)."""

    def listener(event: Any) -> None:
        if isinstance(event, events.StepStarted) and event.index == k:
            raise Crash(f"killed before step {k + 1}")
        if k == total and isinstance(event, events.StepFinished) and event.index == total - 1:
            raise Crash("killed after the last step")

    return listener


def crashed_world(strategy: str, k: int, behaviours: dict[str, Behaviour] | None = None) -> World:
    world = build_world(behaviours)
    with pytest.raises(Crash):
        world.deploy(strategy, listeners=[crash_at_boundary(k, len(PLANS[strategy]))])
    world.events.clear()
    return world


def assert_consistent(world: World, strategy: str) -> None:
    """No mixed state: the stack and the cloud hold the promoted release or the checkpoint."""
    release = world.release()
    assert same_release(release, world.applied())
    assert same_release(release, promoted(strategy, world.start)) or release == world.start, release


def change_updates(world: World) -> list[int]:
    """Plan indices of the succeeded ``step`` updates, oldest first."""
    found = []
    for entry in reversed(world.stack.history()):
        tag = decode(entry.message)
        if tag is not None and entry.result == "succeeded" and tag.phase == "step":
            found.append(tag.step)
    return found


def expected_changes(strategy: str) -> list[int]:
    steps = build_world().driver().plan(SERVICE, "v2.0.0", strategy)[3]
    return [i for i, s in enumerate(steps) if isinstance(s, Change)]


# --------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize(("strategy", "k"), BOUNDARIES)
def test_resume_after_a_crash_at_every_step_boundary_completes(strategy: str, k: int) -> None:
    world = crashed_world(strategy, k)
    found = world.latest() if k > 0 else None

    if found is None or found.finished:
        # killed before the first update, or after the update that finished the deployment:
        # nothing is open, and the stack is at one end or the other
        with pytest.raises(InvalidInput, match="no open deployment"):
            run(world.driver().resume(SERVICE))
        assert_consistent(world, strategy)
        return

    record = run(world.driver().resume(SERVICE))

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert record.deployment_id == found.deployment_id
    assert same_release(world.release(), promoted(strategy, world.start))
    assert same_release(world.applied(), world.release())
    latest = world.latest()
    assert latest.deployment_id == found.deployment_id and latest.status == "completed"
    # resume continued from the last completed step: every change was applied exactly once
    assert change_updates(world) == expected_changes(strategy)


@pytest.mark.parametrize(("strategy", "k"), BOUNDARIES)
def test_abort_after_a_crash_at_every_step_boundary_restores_the_checkpoint(strategy: str, k: int) -> None:
    world = crashed_world(strategy, k)
    found = world.latest() if k > 0 else None

    if found is None or found.finished:
        with pytest.raises(InvalidInput, match="no open deployment"):
            run(world.driver().abort(SERVICE))
        assert_consistent(world, strategy)
        return

    record = run(world.driver().abort(SERVICE))

    assert record.status is DeploymentStatus.ROLLED_BACK, record.errors
    assert record.rolled_back_to == 1
    assert world.release() == world.start
    assert world.applied() == world.start
    latest = world.latest()
    assert latest.deployment_id == found.deployment_id and latest.status == "aborted"
    assert not latest.open


def test_before_the_first_update_a_crash_leaves_the_stack_free_for_a_new_deployment() -> None:
    world = crashed_world("canary", 0)

    assert world.stack.updates == 0 and world.release() == world.start
    assert world.deploy("canary").status is DeploymentStatus.COMPLETED


def test_after_the_last_update_a_crash_leaves_a_completed_deployment() -> None:
    world = crashed_world("blue-green", len(PLANS["blue-green"]))

    assert world.latest().status == "completed"
    assert same_release(world.release(), promoted("blue-green", world.start))
    # nothing is open, so the next deployment may start
    with pytest.raises(InvalidInput, match="already live"):
        world.deploy("blue-green")


# --------------------------------------------------------------------------- crash inside an update


def crash_during(kind: str) -> Any:
    def crash_when(message: str) -> BaseException | None:
        tag = decode(message)
        if tag is not None and tag.kind == kind:
            return Crash(f"killed during the {kind} update")
        return None

    return crash_when


@pytest.mark.parametrize(
    ("strategy", "kind"),
    [
        ("canary", "deploy-idle"),
        ("canary", "set-weight"),
        ("blue-green", "promote"),
        ("ab-test", "start-variants"),
        ("ab-test", "scale-down"),
        ("rolling", "roll-refresh"),
    ],
)
@pytest.mark.parametrize(
    ("leaves", "applied"),
    [("in-progress", True), ("in-progress", False), ("failed", False), (None, False), (None, True)],
)
def test_resume_after_a_crash_inside_an_update(
    strategy: str, kind: str, leaves: str | None, applied: bool
) -> None:
    world = build_world()
    world.stack.crash_when = crash_during(kind)
    world.stack.crash_leaves = leaves
    world.stack.crash_applied = applied
    with pytest.raises(Crash):
        world.deploy(strategy)
    world.stack.crash_when = None

    if world.stack.updates == 1 and leaves is None:
        # the very first update died without a trace: history shows no deployment at all, and a
        # new deployment refuses a config that differs from the last update; rollback repairs it
        with pytest.raises(InvalidInput, match="no open deployment"):
            run(world.driver().resume(SERVICE))
        with pytest.raises(InvalidInput, match="differs from the last update"):
            world.deploy(strategy)
        assert run(world.driver().rollback(SERVICE)).status is DeploymentStatus.ROLLED_BACK
        assert world.release() == world.start and world.applied() == world.start
        assert world.deploy(strategy).status is DeploymentStatus.COMPLETED
        return

    record = run(world.driver().resume(SERVICE))

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert same_release(world.release(), promoted(strategy, world.start))
    assert same_release(world.applied(), world.release())
    assert world.latest().status == "completed"


@pytest.mark.parametrize("leaves", ["in-progress", None])
def test_abort_after_a_crash_inside_a_promotion(leaves: str | None) -> None:
    world = build_world()
    world.stack.crash_when = crash_during("promote")
    world.stack.crash_leaves = leaves
    world.stack.crash_applied = True
    with pytest.raises(Crash):
        world.deploy("blue-green")
    world.stack.crash_when = None
    assert world.applied().live == "green"  # the killed update got as far as the promotion

    record = run(world.driver().abort(SERVICE))

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert world.release() == world.start and world.applied() == world.start
    assert world.latest().status == "aborted"


@pytest.mark.parametrize("leaves", ["in-progress", None])
def test_a_crash_during_the_automatic_rollback_is_finished_by_resume(leaves: str | None) -> None:
    world = build_world({"v2.0.0": Behaviour(p99=3.0)})
    world.stack.crash_when = crash_during("rollback")
    world.stack.crash_leaves = leaves
    with pytest.raises(Crash):
        world.deploy("blue-green")
    world.stack.crash_when = None

    record = run(world.driver().resume(SERVICE))

    # whether history shows the rollback begun or not, the bad version does not stay
    assert record.status is DeploymentStatus.ROLLED_BACK, record.errors
    assert world.release() == world.start and world.applied() == world.start
    assert not world.latest().open


def test_a_second_crash_during_resume_is_resumed_again() -> None:
    world = crashed_world("canary", 8)
    with pytest.raises(Crash):
        run(world.driver(listeners=[crash_at_boundary(15, len(PLANS["canary"]))]).resume(SERVICE))

    record = run(world.driver().resume(SERVICE))

    assert record.status is DeploymentStatus.COMPLETED
    assert same_release(world.release(), promoted("canary", world.start))
    assert change_updates(world) == expected_changes("canary")


# --------------------------------------------------------------------------- what resume refuses or keeps


def test_resume_refuses_when_the_settings_now_give_another_plan() -> None:
    world = crashed_world("canary", 8)
    config = world.stack.read_config()
    service = config.services[SERVICE]
    strategy = service.strategy.model_copy(update={"canary_increment": 30})
    changed = service.model_copy(update={"strategy": strategy})
    # someone edits the stack's settings between the crash and the resume
    world.stack._config = config.model_copy(update={"services": {SERVICE: changed}})
    updates = world.stack.updates

    with pytest.raises(InvalidInput, match=r"cannot resume .* run `rfs-deploy abort --stack test`"):
        run(world.driver().resume(SERVICE))
    assert world.stack.updates == updates

    assert run(world.driver().abort(SERVICE)).status is DeploymentStatus.ROLLED_BACK
    assert world.release() == world.start and world.applied() == world.start


def test_resume_with_a_record_store_continues_the_same_record(tmp_path: Any) -> None:
    from rfs_deploy.drive.driver import Driver
    from rfs_deploy.drive.records import RecordStore

    store = RecordStore(tmp_path)
    world = build_world()
    with pytest.raises(Crash):
        run(
            Driver(world.seams([crash_at_boundary(6, 27)], records=store)).deploy(SERVICE, "v2.0.0", "canary")
        )
    first = store.load(world.latest().deployment_id)
    # saved after step 6 (index 5) finished; the crash came as step 7 began
    assert first.status is DeploymentStatus.IN_PROGRESS and first.current_step == 5

    record = run(Driver(world.seams(records=store)).resume(SERVICE))

    assert record.status is DeploymentStatus.COMPLETED
    saved = store.load(record.deployment_id)
    assert saved.status is DeploymentStatus.COMPLETED
    assert saved.started_at == first.started_at
    assert sorted(s.index for s in saved.steps) == list(range(27))
    assert "resumed at step 7 of 27" in saved.errors


# A canary with per-deployment settings: other weights than the stack's (same number of steps, so
# only the recorded settings tell them apart) and a stricter error-rate threshold.
OVERRIDES = {"strategy": {"steps": [20, 40, 60, 80, 90]}, "analysis": {"maxErrorRate": 0.02}}


def crashed_with_overrides(store: Any) -> World:
    from rfs_deploy.drive.driver import Driver

    world = build_world()
    crash = crash_at_boundary(6, 25)
    with pytest.raises(Crash):
        run(Driver(world.seams([crash], records=store)).deploy(SERVICE, "v2.0.0", "canary", OVERRIDES))
    world.events.clear()
    return world


def canary_weights(world: World) -> list[int]:
    return [
        tag_release.weights["green"]
        for entry in reversed(world.stack.history())
        if (tag := decode(entry.message)) is not None and tag.kind == "set-weight"
        if (tag_release := entry.release[SERVICE] if entry.release else None) is not None
    ]


def test_resume_rebuilds_the_plan_from_the_deployments_recorded_settings(tmp_path: Any) -> None:
    from rfs_deploy.drive.driver import Driver
    from rfs_deploy.drive.records import RecordStore

    store = RecordStore(tmp_path)
    world = crashed_with_overrides(store)
    assert store.load(world.latest().deployment_id).settings is not None

    record = run(Driver(world.seams(records=store)).resume(SERVICE))

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert canary_weights(world) == [20, 40, 60, 80, 90, 100]
    assert {v.numbers["max_error_rate"] for v in record.verdicts if "max_error_rate" in v.numbers} == {0.02}


def test_resume_without_the_recorded_settings_refuses_rather_than_run_another_plan(tmp_path: Any) -> None:
    from rfs_deploy.drive.records import RecordStore

    world = crashed_with_overrides(RecordStore(tmp_path))
    updates = world.stack.updates

    # a new machine: stack history, but not the record with the deployment's settings
    with pytest.raises(InvalidInput, match="per-deployment settings that are not recorded on this machine"):
        run(world.driver().resume(SERVICE))
    assert world.stack.updates == updates
    assert run(world.driver().abort(SERVICE)).status is DeploymentStatus.ROLLED_BACK
    assert world.release() == world.start and world.applied() == world.start


def test_resume_refuses_when_the_stacks_settings_changed_even_with_the_same_plan_length() -> None:
    world = crashed_world("canary", 8)
    config = world.stack.read_config()
    service = config.services[SERVICE]
    stricter = service.model_copy(
        update={"analysis": service.analysis.model_copy(update={"max_error_rate": 0.5})}
    )
    world.stack._config = config.model_copy(update={"services": {SERVICE: stricter}})

    with pytest.raises(InvalidInput, match=r"cannot resume deployment .* settings changed since it started"):
        run(world.driver().resume(SERVICE))


def test_every_plan_update_names_the_settings_digest() -> None:
    from rfs_deploy.drive.journal import settings_digest

    world = build_world()
    digest = settings_digest(world.driver().plan(SERVICE, "v2.0.0", "canary")[0])
    world.deploy("canary")
    tags = [decode(e.message) for e in world.stack.history()]
    assert {t.settings for t in tags if t is not None and t.phase in ("step", "done")} == {digest}


# --------------------------------------------------------------------------- resume that cannot re-apply


def killed_inside(kind: str, strategy: str) -> World:
    world = build_world()
    world.stack.crash_when = crash_during(kind)
    world.stack.crash_applied = True
    with pytest.raises(Crash):
        world.deploy(strategy)
    world.stack.crash_when = None
    return world


def test_resume_whose_re_apply_fails_rolls_back() -> None:
    world = killed_inside("promote", "blue-green")
    world.stack.fail_when = lambda message: (tag := decode(message)) is not None and tag.phase == "resume"

    record = run(world.driver().resume(SERVICE))

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("resume could not restore the state of step 5" in e for e in record.errors), record.errors
    assert world.release() == world.start and world.applied() == world.start
    assert world.latest().status == "rolled-back"


def test_resume_whose_re_apply_never_shows_on_the_listener_rolls_back() -> None:
    world = killed_inside("set-weight", "canary")  # the killed update had moved 10 % already
    world.cloud.weight_lag_reads = VERIFY_TIMEOUT // VERIFY_POLL + 5  # longer than verify waits

    def propagation_recovers(event: Any) -> None:
        if isinstance(event, events.RollbackStarted):
            world.cloud.weight_lag_reads = 0

    record = run(world.driver(listeners=[propagation_recovers]).resume(SERVICE))

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("does not show the change" in e for e in record.errors), record.errors
    assert world.release() == world.start and world.applied() == world.start
