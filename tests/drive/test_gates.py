"""Gates: a deployment paused until promoted, on the fakes (docs/gates.md).

Until the stack file's step lists emit gates, these tests put one into the canary's plan: a
wrapper around the plan function the driver calls adds a :class:`Gate` after the first weight
step (as ``steps: [{setWeight: 10}, {pause: {}}]`` would), in deploy and in promote alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from drive_world import NEW, SERVICE, Crash, World, build_world, promoted, run

from rfs_deploy.drive import driver as driver_module
from rfs_deploy.drive import journal
from rfs_deploy.drive.driver import Driver, full_skip
from rfs_deploy.drive.records import DeploymentStatus, RecordStore
from rfs_deploy.drive.steps import Analyze, Gate, SetWeight, Step
from rfs_deploy.errors import InvalidInput, StackBusy
from rfs_deploy.journal_tags import PAUSED, owner_alive, pauser
from rfs_deploy.testing import Behaviour

REAL_PLAN = driver_module.plan


def gated(*weights: int) -> Any:
    """A plan function that adds a gate after the weight steps of ``weights``."""

    def plan(*args: Any, **kw: Any) -> tuple[Step, ...]:
        steps: list[Step] = []
        for step in REAL_PLAN(*args, **kw):
            steps.append(step)
            if isinstance(step, SetWeight) and step.weight in weights:
                steps.append(Gate(reason=f"canary at {step.weight} %"))
        return tuple(steps)

    return plan


@pytest.fixture
def gate_at_10(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(driver_module, "plan", gated(10))
    yield


def gate_index(world: World) -> int:
    steps = world.driver().plan(SERVICE, NEW, "canary")[3]
    return next(i for i, s in enumerate(steps) if isinstance(s, Gate))


def weight_of_new(world: World) -> int:
    release = world.release()
    return release.weights[release.idle if release.slot(release.idle).version == NEW else release.live]


@pytest.mark.usefixtures("gate_at_10")
def test_deploy_stops_at_the_gate_records_the_pause_and_releases_the_lease(world: World) -> None:
    gate = gate_index(world)
    record = world.deploy("canary")

    assert record.status is DeploymentStatus.IN_PROGRESS
    assert record.paused is not None
    assert (record.paused["step"], record.paused["by"]) == (gate, pauser())
    assert record.paused["reason"] == "canary at 10 %"
    assert [s.outcome for s in record.steps if s.index == gate] == ["paused"]
    found = world.latest()
    assert found.status == "paused" and found.open
    assert (found.paused_at, found.paused_by, found.next_step) == (gate, pauser(), gate + 1)
    tag = found.last_tag
    assert (tag.kind, tag.phase, tag.step) == (PAUSED, "step", gate)
    assert not owner_alive(tag), "the pause releases the deployment"
    # the pause changed nothing: the same release state as the weight step before it
    entries = sorted(world.stack.history(), key=lambda e: e.version)
    assert entries[-1].release == entries[-2].release
    assert weight_of_new(world) == 10
    # while paused, nothing moves
    assert world.applied().weights == world.release().weights


@pytest.mark.usefixtures("gate_at_10")
def test_a_paused_deployment_refuses_another_deploy_and_resume_naming_promote(world: World) -> None:
    world.deploy("canary")
    found = world.latest()
    with pytest.raises(StackBusy) as busy:
        world.deploy("canary", version="v3.0.0")
    message = str(busy.value)
    assert f"deployment {found.deployment_id}" in message and "is paused at step" in message
    assert "promote --stack test --service api-service" in message
    assert "abort --stack test --service api-service" in message
    assert f"by {pauser()}" in message
    with pytest.raises(InvalidInput, match="promote --stack test --service api-service"):
        run(world.driver().resume(SERVICE))
    assert world.latest().status == "paused"


@pytest.mark.usefixtures("gate_at_10")
def test_promote_from_a_new_driver_continues_to_completed(world: World) -> None:
    gate = gate_index(world)
    first = world.deploy("canary")
    versions = len(world.stack.history())

    record = run(world.driver().promote(SERVICE))

    assert record.deployment_id == first.deployment_id
    assert record.status is DeploymentStatus.COMPLETED
    assert record.paused is None
    assert world.latest().status == "completed"
    assert world.release() == promoted("canary", world.start)
    # promote ran the steps after the gate, not the ones before it again
    later = [journal.decode(e.message) for e in world.stack.history() if e.version > versions]
    # (the step after the gate is the analysis at 10 %: the first update is the next weight)
    assert later and min(t.step for t in later if t is not None) == gate + 2
    assert any(e.startswith("promoted past step") for e in record.errors)


@pytest.mark.usefixtures("gate_at_10")
def test_abort_at_the_gate_restores_the_checkpoint(world: World) -> None:
    world.deploy("canary")
    found = world.latest()
    assert found.checkpoint is not None

    record = run(world.driver().abort(SERVICE))

    assert record.status is DeploymentStatus.ROLLED_BACK and record.paused is None
    assert record.rolled_back_to == found.checkpoint.version
    assert world.latest().status == "aborted"
    assert world.release() == world.start
    assert world.applied() == world.start


def test_promote_stops_at_the_next_gate(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver_module, "plan", gated(10, 50))
    world.deploy("canary")
    record = run(world.driver().promote(SERVICE))
    assert record.status is DeploymentStatus.IN_PROGRESS and record.paused is not None
    assert record.paused["reason"] == "canary at 50 %"
    assert weight_of_new(world) == 50
    assert run(world.driver().promote(SERVICE)).status is DeploymentStatus.COMPLETED


def test_promote_full_skips_the_remaining_weights_and_gates_keeps_the_full_weight_analysis(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver_module, "plan", gated(10, 50))
    steps = world.driver().plan(SERVICE, NEW, "canary")[3]
    full = next(i for i, s in enumerate(steps) if isinstance(s, SetWeight) and s.weight == 100)
    gate = gate_index(world)
    world.deploy("canary")
    versions = len(world.stack.history())

    record = run(world.driver().promote(SERVICE, full=True))

    assert record.status is DeploymentStatus.COMPLETED
    weights = [
        steps[t.step].weight
        for e in world.stack.history()
        if e.version > versions and (t := journal.decode(e.message)) is not None
        if t.kind == "set-weight"
    ]
    assert weights == [100], "no weight step between the gate and 100 %"
    outcome = {s.index: s.outcome for s in record.steps}
    assert all(outcome[i] == "skipped" for i in range(gate + 1, full))
    assert outcome[full + 1] == "passed" and isinstance(steps[full + 1], Analyze)
    assert world.release() == promoted("canary", world.start)


@pytest.mark.usefixtures("gate_at_10")
def test_promote_full_skip_analysis_skips_the_analysis_at_full_weight(world: World) -> None:
    gate = gate_index(world)
    world.deploy("canary")
    record = run(world.driver().promote(SERVICE, full=True, skip_analysis=True))
    assert record.status is DeploymentStatus.COMPLETED
    analyses = [s for s in record.steps if s.kind == "analyze" and s.index > gate]
    assert analyses and {s.outcome for s in analyses} == {"skipped"}


def test_full_skip_of_a_plan() -> None:
    steps: tuple[Step, ...] = (
        SetWeight(weight=10),
        Gate(reason="a"),
        Analyze(duration=60, interval=10, baseline=True),
        SetWeight(weight=50),
        Gate(reason="b"),
        SetWeight(weight=100),
        Analyze(duration=60, interval=10, baseline=False),
    )
    assert full_skip(steps, 2, skip_analysis=False) == {2, 3, 4}
    assert full_skip(steps, 2, skip_analysis=True) == {2, 3, 4, 6}


def test_promote_refuses_a_deployment_that_is_not_paused(world: World) -> None:
    with pytest.raises(InvalidInput, match="no open deployment"):
        run(world.driver().promote(SERVICE))
    with pytest.raises(InvalidInput, match="goes with --full"):
        run(world.driver().promote(SERVICE, skip_analysis=True))


def test_retry_refuses_when_the_settings_it_ran_with_are_not_known_here() -> None:
    world = build_world({NEW: Behaviour(p99=3.0)})
    overrides = {"strategy": {"type": "canary", "steps": [25, 50]}}
    first = world.deploy("canary", overrides=overrides)
    assert first.status is DeploymentStatus.ROLLED_BACK
    # no record store: the per-deployment steps are not known to this driver
    with pytest.raises(InvalidInput, match="ran with settings not recorded on this machine"):
        run(world.driver().retry(SERVICE))


def test_retry_after_a_rollback_completes_with_the_same_version_and_plan(tmp_path: Path) -> None:
    world = build_world({NEW: Behaviour(p99=3.0)})
    store = RecordStore(tmp_path)
    overrides = {"strategy": {"type": "canary", "steps": [25, 50]}}
    first = run(Driver(world.seams(records=store)).deploy(SERVICE, NEW, "canary", overrides))
    assert first.status is DeploymentStatus.ROLLED_BACK
    world.cloud.behaviours[NEW] = Behaviour()

    again = run(Driver(world.seams(records=store)).retry(SERVICE))

    assert again.status is DeploymentStatus.COMPLETED
    assert (again.version, again.retry_of) == (NEW, first.deployment_id)
    assert again.deployment_id != first.deployment_id
    assert again.settings == first.settings
    weights = [t.kind for t in world.tags() if t.deployment_id == again.deployment_id]
    assert weights.count("set-weight") == 3  # 25, 50 and 100: the recorded steps, not the stack's
    assert world.release() == promoted("canary", world.start)
    with pytest.raises(InvalidInput, match="completed; nothing to retry"):
        run(Driver(world.seams(records=store)).retry(SERVICE))


def test_retry_refuses_an_open_deployment(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver_module, "plan", gated(10))
    world.deploy("canary")
    with pytest.raises(StackBusy, match="is paused at step"):
        run(world.driver().retry(SERVICE))


def test_a_step_list_gate_from_the_stack_config_pauses_and_promotes() -> None:
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"analyze": "2m"}]
    world = build_world(service_changes={"strategy": {"type": "canary", "steps": steps}})
    record = world.deploy()
    assert record.paused is not None and world.latest().status == "paused"
    assert weight_of_new(world) == 20
    assert run(world.driver().promote(SERVICE)).status is DeploymentStatus.COMPLETED
    assert world.release() == promoted("canary", world.start)


def crash_during(kind: str) -> Any:
    def crash_when(message: str) -> BaseException | None:
        tag = journal.decode(message)
        return Crash(f"killed during the {kind} update") if tag is not None and tag.kind == kind else None

    return crash_when


@pytest.mark.usefixtures("gate_at_10")
@pytest.mark.parametrize("leaves", ["in-progress", "failed", None])
def test_a_deploy_killed_while_recording_the_pause_resumes_into_the_pause(world: World, leaves: str) -> None:
    gate = gate_index(world)
    world.stack.crash_when = crash_during(PAUSED)
    world.stack.crash_leaves = leaves
    with pytest.raises(Crash):
        world.deploy("canary")
    world.stack.crash_when = None
    assert world.latest().status == "in-progress"

    record = run(world.driver().resume(SERVICE))

    assert record.paused is not None and record.paused["step"] == gate
    assert world.latest().status == "paused" and weight_of_new(world) == 10


@pytest.mark.usefixtures("gate_at_10")
def test_a_promote_killed_on_a_later_step_is_resumed(world: World) -> None:
    world.deploy("canary")
    world.stack.crash_when = crash_during("set-weight")
    with pytest.raises(Crash):
        run(world.driver().promote(SERVICE))
    world.stack.crash_when = None
    # no longer paused: the promote's update of the next weight step was under way
    assert world.latest().status == "in-progress"
    with pytest.raises(InvalidInput, match="is not paused"):
        run(world.driver().promote(SERVICE))

    assert run(world.driver().resume(SERVICE)).status is DeploymentStatus.COMPLETED
    assert world.release() == promoted("canary", world.start)


@pytest.mark.parametrize("strategy", ["blue-green", "ab-test"])
@pytest.mark.parametrize("full", [False, True])
def test_a_gate_before_the_switch_or_the_promotion_holds_and_promotes(
    strategy: str, full: bool, tmp_path: Path
) -> None:
    world = build_world()
    store = RecordStore(tmp_path)  # the deployment's own steps: promote reads them from its record
    overrides = {"strategy": {"type": strategy, "steps": [{"pause": {}}]}}
    record = run(Driver(world.seams(records=store)).deploy(SERVICE, NEW, strategy, overrides))
    assert record.paused is not None and world.latest().status == "paused"
    assert world.release().live == world.start.live, "no switch while paused"

    done = run(Driver(world.seams(records=store)).promote(SERVICE, full=full))

    assert done.status is DeploymentStatus.COMPLETED, done.errors
    assert world.release() == promoted(strategy, world.start)
