"""``rfs-deploy pause``: a running deployment held at its current weight from another process,
on the fakes (docs/gates.md).

The request is what ``pause`` runs: one stack update that changes nothing, tagged
``pause-request`` (:func:`rfs_deploy.drive.stack.pause_request`). Here it is posted from an event
listener of the running driver, so it lands at a known moment between two of the driver's own
updates, as it would from another machine; the command-line tests
(tests/cli/test_cli_watch.py) post it from a second process.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from drive_world import NEW, SERVICE, Crash, World, build_world, promoted, run

from rfs_deploy.drive import events, journal
from rfs_deploy.drive.driver import Driver, span
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.drive.stack import pause_request
from rfs_deploy.drive.steps import Analyze, Gate, SetWeight
from rfs_deploy.errors import InvalidInput, StackBusy
from rfs_deploy.journal_tags import PAUSE_REQUEST, PAUSED

BY = "ops@elsewhere"


def post(world: World, by: str = BY) -> int:
    """Post a pause request for the running deployment, as ``pause`` does (the live release
    state written back as it is, one update); returns its stack version."""
    found = journal.find_open_deployment(world.stack.history(), SERVICE)
    assert found is not None
    live = next(e.release for e in world.stack.history() if e.result == "succeeded" and e.release)
    world.stack.write_release(live)
    return world.stack.up(pause_request(found, by)).version


class PostWhen:
    """A listener that posts one pause request at the first event ``when`` accepts."""

    def __init__(self, world: World, when: Any, then: Any = None) -> None:
        self.world, self.when, self.then = world, when, then
        self.version: int | None = None
        self.weights: dict[str, int] | None = None

    def __call__(self, event: Any) -> None:
        if self.version is None and self.when(event):
            self.version = post(self.world)
            self.weights = dict(self.world.applied().weights)
            if self.then is not None:
                raise self.then


def analyze_at(world: World, weight: int) -> int:
    """The plan index of the analysis after the canary's ``weight`` step."""
    steps = world.driver().plan(SERVICE, NEW, "canary")[3]
    at = next(i for i, s in enumerate(steps) if s == SetWeight(weight=weight))
    assert isinstance(steps[at + 1], Analyze)
    return at + 1


def started(index: int) -> Any:
    return lambda e: isinstance(e, events.StepStarted) and e.index == index


def beat_in(index: int) -> Any:
    """A heartbeat inside step ``index`` (its wait is under way)."""
    return lambda e: isinstance(e, events.Heartbeat) and e.step == index


def test_a_request_during_an_analysis_holds_after_the_weight_step_and_promote_runs_it_again() -> None:
    world = build_world()
    analysis = analyze_at(world, 30)
    # a tick of the analysis is under way when the request lands
    listener = PostWhen(world, lambda e: isinstance(e, events.StepStarted) and e.index == analysis)
    record = world.deploy("canary", listeners=[listener])

    assert record.status is DeploymentStatus.IN_PROGRESS and record.paused is not None
    assert (record.paused["step"], record.paused["by"]) == (analysis - 1, BY)
    interrupted = next(s for s in record.steps if s.index == analysis)
    assert (
        interrupted.outcome == "interrupted" and "runs again from its start on promote" in interrupted.reason
    )
    assert not any("interrupted" in e for e in record.errors), "a pause is no failure"
    found = world.latest()
    assert (found.status, found.paused_at, found.paused_by, found.next_step) == (
        "paused",
        analysis - 1,
        BY,
        analysis,
    )
    assert (found.last_tag.kind, found.last_tag.by) == (PAUSED, BY)
    # the request is the deployment's message, not one of its updates
    assert [e.version for e in found.pause_requests] == [listener.version]
    assert all(journal.decode(e.message).kind != PAUSE_REQUEST for e in found.entries)  # type: ignore[union-attr]
    assert found.pending_pause is None, "the pause update answers the request"
    # nothing moved: the weights are those of the request's moment (30 %)
    assert world.applied().weights == listener.weights
    assert world.applied().weights[world.applied().idle] == 30

    resumed = run(world.driver().promote(SERVICE))

    assert resumed.status is DeploymentStatus.COMPLETED
    assert world.release() == promoted("canary", world.start)
    again = next(s for s in resumed.steps if s.index == analysis)
    assert again.outcome == "passed", "promote runs the interrupted analysis again"


def test_a_request_between_steps_holds_before_the_next_step() -> None:
    world = build_world()
    analysis = analyze_at(world, 20)
    weight = analysis - 1
    listener = PostWhen(
        world, lambda e: isinstance(e, events.StepFinished) and e.index == weight and e.outcome == "passed"
    )
    record = world.deploy("canary", listeners=[listener])

    assert record.paused is not None and record.paused["step"] == weight
    assert not any(s.index == analysis for s in record.steps), "the next step never started"
    assert world.latest().paused_at == weight
    assert run(world.driver().promote(SERVICE)).status is DeploymentStatus.COMPLETED


def test_a_request_during_a_change_waits_for_the_step_after_it() -> None:
    world = build_world()
    analysis = analyze_at(world, 40)
    # the request lands before the weight step's update: the change and its check run first
    record = world.deploy("canary", listeners=[PostWhen(world, started(analysis - 1))])
    assert record.paused is not None and record.paused["step"] == analysis - 1
    change = next(s for s in record.steps if s.index == analysis - 1)
    assert change.outcome == "passed"


def test_a_request_racing_the_last_step_never_pauses_a_later_deployment() -> None:
    world = build_world()
    steps = world.driver().plan(SERVICE, NEW, "canary")[3]
    last = len(steps) - 1
    listener = PostWhen(world, started(last))
    first = world.deploy("canary", listeners=[listener])

    assert first.status is DeploymentStatus.COMPLETED and first.paused is None
    found = world.latest()
    assert found.status == "completed" and found.pending_pause is None
    assert [e.version for e in found.pause_requests] == [listener.version]
    with pytest.raises(InvalidInput, match="already completed; nothing to pause"):
        world.driver().request_message(SERVICE)

    # the stale request names the first deployment: the next one runs to its end
    run(world.driver().rollback(SERVICE))
    second = world.deploy("canary")
    assert second.status is DeploymentStatus.COMPLETED and second.paused is None
    assert second.deployment_id != first.deployment_id


def test_a_driver_killed_right_after_the_request_is_resumed_without_the_pause() -> None:
    world = build_world()
    analysis = analyze_at(world, 20)
    listener = PostWhen(world, started(analysis), then=Crash("killed after the pause request"))
    with pytest.raises(Crash):
        world.deploy("canary", listeners=[listener])
    found = world.latest()
    assert found.status == "in-progress" and found.pending_pause is not None
    assert found.next_step == analysis, "the request changed nothing the journal counts"
    assert found.foreign_after == (), "a request is no foreign update"

    # resume answers for itself: a request asked of the dead process is not its to honour
    record = run(world.driver().resume(SERVICE))
    assert record.status is DeploymentStatus.COMPLETED and record.paused is None


def test_a_new_request_reaches_a_resumed_driver_whose_predecessor_was_asked() -> None:
    world = build_world()
    first, second = analyze_at(world, 20), analyze_at(world, 50)
    with pytest.raises(Crash):
        world.deploy("canary", listeners=[PostWhen(world, started(first), then=Crash("killed"))])
    # the killed driver was another process (in one test process every driver has one owner)
    world.stack._history = [_elsewhere(e) for e in world.stack._history]
    asked: list[str] = []

    def ask_again(event: Any) -> None:
        # the resumed driver runs: the old request does not refuse a new one
        if not asked and isinstance(event, events.StepStarted) and event.index == second:
            _, message = world.driver().request_message(SERVICE)
            asked.append(message)
            live = next(e.release for e in world.stack.history() if e.result == "succeeded" and e.release)
            world.stack.write_release(live)
            world.stack.up(message)

    record = run(Driver(world.seams([ask_again])).resume(SERVICE))
    assert asked and record.paused is not None and record.paused["step"] == second - 1


def test_pause_refuses_what_is_not_running() -> None:
    world = build_world()
    with pytest.raises(InvalidInput, match="no open deployment"):
        world.driver().request_message(SERVICE)
    world.deploy("canary")
    with pytest.raises(InvalidInput, match="already completed; nothing to pause"):
        world.driver().request_message(SERVICE)


def test_pause_of_a_paused_deployment_is_refused_naming_promote() -> None:
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"analyze": "2m"}]
    world = build_world(service_changes={"strategy": {"type": "canary", "steps": steps}})
    world.deploy()
    with pytest.raises(InvalidInput, match=r"already; run .*promote"):
        world.driver().request_message(SERVICE)


def test_pause_of_a_deployment_whose_driver_is_gone_names_resume_and_abort() -> None:
    world = build_world()
    analysis = analyze_at(world, 20)
    with pytest.raises(Crash):
        world.deploy("canary", listeners=[PostWhen(world, started(analysis), then=Crash("killed"))])
    # another host's tags whose lease ran out: nothing runs the deployment
    world.stack._history = [_elsewhere(e) for e in world.stack._history]
    with pytest.raises(StackBusy, match=r"is gone, so nothing runs it to pause; run .*resume.*abort"):
        world.driver().request_message(SERVICE)


def _elsewhere(entry: Any) -> Any:
    """``entry`` as if written by a process on another host whose lease ran out long ago."""
    parsed = journal.parse(entry.message)
    if parsed is None or parsed[0].owner is None:
        return entry
    moved = dataclasses.replace(parsed[0], owner="gone-host/1", lease=1)
    return dataclasses.replace(entry, message=journal.encode(moved, parsed[1]))


def test_post_pause_request_runs_one_update_that_changes_nothing() -> None:
    world = build_world()
    analysis = analyze_at(world, 20)
    with pytest.raises(Crash):
        world.deploy("canary", listeners=[PostWhen(world, started(analysis), then=Crash("killed"))])
    before = dict(world.applied().weights)
    found = world.latest()
    version = run(Driver(world.seams()).post_request(pause_request(found, "someone@else")))
    assert world.applied().weights == before
    entry = next(e for e in world.stack.history() if e.version == version)
    assert entry.result == "succeeded"
    assert world.latest().pending_pause is not None


# --------------------------------------------------------------------------- the time budget


def gated(counts: bool) -> World:
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"analyze": "2m"}]
    return build_world(
        service_changes={
            "strategy": {"type": "canary", "steps": steps},
            "deploy": {"maxDeploymentTime": "10m", "pauseCountsTowardsDeadline": counts},
        }
    )


def test_by_default_the_budget_starts_again_at_promote() -> None:
    world = gated(False)
    record = world.deploy()
    assert record.paused is not None and "deadline" not in record.paused
    world.clock.advance(3 * 3600)
    assert run(world.driver().promote(SERVICE)).status is DeploymentStatus.COMPLETED


def test_a_pause_that_counts_rolls_back_at_promote_once_the_budget_ran_out_saying_so() -> None:
    world = gated(True)
    record = world.deploy()
    assert record.paused is not None and record.paused["deadline"] > world.clock.now()
    world.clock.advance(3 * 3600)

    after = run(world.driver().promote(SERVICE))

    assert after.status is DeploymentStatus.ROLLED_BACK
    why = " ".join(after.errors)
    assert "paused 3h; maxDeploymentTime 10m ran out while paused" in why
    assert "deploy.pauseCountsTowardsDeadline" in why
    assert world.release() == world.start


def test_a_pause_that_counts_but_fits_the_budget_promotes_to_completed() -> None:
    world = gated(True)
    world.deploy()
    world.clock.advance(60)
    assert run(world.driver().promote(SERVICE)).status is DeploymentStatus.COMPLETED


def test_span_writes_durations_as_the_config_does() -> None:
    assert [span(s) for s in (0, 45, 600, 5400, 10800, 90061)] == [
        "0s",
        "45s",
        "10m",
        "1h30m",
        "3h",
        "1d1h1m1s",
    ]


def test_a_gate_is_no_pause_request() -> None:
    world = build_world()
    steps = world.driver().plan(SERVICE, NEW, "canary")[3]
    assert not any(isinstance(s, Gate) for s in steps)
