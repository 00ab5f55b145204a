"""Gates: a deployment paused until promoted, on the fakes (docs/gates.md).

The gates are written as users write them: a canary step list in the stack config with
``{pause: {}}`` after a weight (:func:`gated_world`). The list is the standard canary of the
fakes' stack (10 % up by 10, one minute of analysis per weight), so the plan is that canary's
with a gate after each chosen weight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from drive_world import NEW, SERVICE, Crash, World, build_world, promoted, run

from rfs_deploy.drive import journal
from rfs_deploy.drive.driver import Driver, full_skip
from rfs_deploy.drive.records import DeploymentStatus, RecordStore
from rfs_deploy.drive.steps import Analyze, Gate, ScaleIdle, SetWeight, Step
from rfs_deploy.errors import InvalidInput, StackBusy
from rfs_deploy.journal_tags import PAUSED, owner_alive, pauser
from rfs_deploy.testing import Behaviour


def canary_steps(*gates: int) -> list[dict[str, Any]]:
    """The stack's canary (``canaryPercentage: 10``, ``canaryIncrement: 10``,
    ``canaryInterval: 60``) as a step list, with a gate right after each weight in ``gates``."""
    steps: list[dict[str, Any]] = []
    for weight in range(10, 101, 10):
        steps.append({"setWeight": weight})
        if weight in gates:
            steps.append({"pause": {}})
        steps.append({"analyze": "1m"})
    return steps


def gated_world(*gates: int) -> World:
    """The standard world whose canary has a step list with gates after ``gates`` (weights)."""
    return build_world(service_changes={"strategy": {"type": "canary", "steps": canary_steps(*gates)}})


def test_the_step_list_is_the_stack_canary_with_a_gate_after_the_weight() -> None:
    plain = build_world().driver().plan(SERVICE, NEW, "canary")[3]
    steps = gated_world(10, 50).driver().plan(SERVICE, NEW, "canary")[3]
    gates = [i for i, s in enumerate(steps) if isinstance(s, Gate)]
    assert [steps[i - 1] for i in gates] == [SetWeight(weight=10), SetWeight(weight=50)]
    assert [steps[i].reason for i in gates] == ["canary at 10 %", "canary at 50 %"]
    assert tuple(s for s in steps if not isinstance(s, Gate)) == plain


@pytest.fixture
def world(request: pytest.FixtureRequest) -> World:
    """The standard world; with a parameter (weights), :func:`gated_world` of those weights."""
    gates: tuple[int, ...] = getattr(request, "param", ())
    return gated_world(*gates) if gates else build_world()


#: A test on the world whose canary has a gate after 10 %.
GATED = pytest.mark.parametrize("world", [(10,)], indirect=True, ids=["gate-at-10"])


def gate_index(world: World) -> int:
    steps = world.driver().plan(SERVICE, NEW, "canary")[3]
    return next(i for i, s in enumerate(steps) if isinstance(s, Gate))


def weight_of_new(world: World) -> int:
    release = world.release()
    return release.weights[release.idle if release.slot(release.idle).version == NEW else release.live]


@GATED
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


@GATED
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


@GATED
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
    # the promote is another driver run of this same process: another owner in the journal
    before = {t.owner for t in (journal.decode(e.message) for e in world.stack.history()) if t} - {
        t.owner for t in later if t is not None
    }
    assert before and {t.owner for t in later if t is not None}.isdisjoint(before)


@GATED
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


def test_promote_stops_at_the_next_gate() -> None:
    world = gated_world(10, 50)
    world.deploy("canary")
    record = run(world.driver().promote(SERVICE))
    assert record.status is DeploymentStatus.IN_PROGRESS and record.paused is not None
    assert record.paused["reason"] == "canary at 50 %"
    assert weight_of_new(world) == 50
    assert run(world.driver().promote(SERVICE)).status is DeploymentStatus.COMPLETED


def test_promote_full_skips_the_remaining_weights_and_gates_keeps_the_full_weight_analysis() -> None:
    world = gated_world(10, 50)
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
    # every weight and observation up to 100 % is skipped; the idle slot still grows to the
    # full size (each scale step waits for its instances) before all the traffic moves to it
    assert all(
        outcome[i] == ("passed" if isinstance(steps[i], ScaleIdle) else "skipped")
        for i in range(gate + 1, full)
    )
    grown = [steps[i] for i in range(gate + 1, full) if isinstance(steps[i], ScaleIdle)]
    assert grown and grown[-1].capacity == world.start.slot(world.start.live).capacity
    assert outcome[full + 1] == "passed" and isinstance(steps[full + 1], Analyze)
    assert world.release() == promoted("canary", world.start)


@GATED
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


@GATED
def test_retry_refuses_an_open_deployment(world: World) -> None:
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


@GATED
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


@GATED
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
