"""Step handlers live in one table in the runner (step type -> handler)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from drive_world import NEW, SERVICE, STRATEGIES, World, run

from rfs_deploy.drive import steps
from rfs_deploy.drive.analysis import Analyst
from rfs_deploy.drive.journal import last_good_checkpoint
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.drive.runner import HANDLERS, Runner, _unhandled, handler_for


def concrete_steps() -> list[type[steps.Step]]:
    found: list[type[steps.Step]] = []
    todo: list[type[steps.Step]] = [steps.Step]
    while todo:
        kind = todo.pop()
        todo.extend(kind.__subclasses__())
        if kind.__module__ == steps.__name__ and kind.kind not in ("step",):
            found.append(kind)
    return found


def test_every_step_type_of_the_plans_has_a_handler(world: World) -> None:
    kinds = concrete_steps()
    assert len(kinds) >= 13
    for kind in kinds:
        assert handler_for(kind.__new__(kind)) is not _unhandled, kind.__name__
    for strategy in STRATEGIES:
        for step in world.driver().plan(SERVICE, NEW, strategy)[3]:
            assert handler_for(step) is not _unhandled, (strategy, step.kind)


def test_the_observing_steps_are_the_analysts_methods() -> None:
    observing = {steps.Analyze: Analyst.analyze, steps.WatchRefresh: Analyst.watch_refresh}
    observing[steps.Decide] = Analyst.decide
    for kind, method in observing.items():
        assert HANDLERS[kind].__name__ == method.__name__
    # every change goes through the runner's one change handler, but a canary's scale step,
    # which also waits for the instances it added (the change handler, then the health wait)
    changes = [k for k in concrete_steps() if issubclass(k, steps.Change) and k is not steps.ScaleIdle]
    assert changes and {handler_for(k.__new__(k)) for k in changes} == {HANDLERS[steps.Change]}
    assert handler_for(steps.ScaleIdle(capacity=2, weight=20, timeout=60)) is HANDLERS[steps.ScaleIdle]


@dataclass(frozen=True)
class Mystery(steps.Step):
    kind: ClassVar[str] = "mystery"


def test_a_step_without_a_handler_fails_and_rolls_back(world: World) -> None:
    checkpoint = last_good_checkpoint(world.stack.history())
    assert checkpoint is not None
    service = world.config_service()
    record = DeploymentRecord(
        deployment_id="0badc0de",
        stack=world.stack.stack_name,
        service=SERVICE,
        version=NEW,
        previous_version=world.start.slot(world.start.live).version,
        strategy="canary",
        started_at=world.clock.now(),
    )
    runner = Runner(world.seams(), record, service, (Mystery(),), checkpoint, 0)

    run(runner.run())

    assert record.steps[0].outcome == "failed"
    assert record.steps[0].reason == "no handler for step kind mystery"
    assert record.status is DeploymentStatus.ROLLED_BACK
