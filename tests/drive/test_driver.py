"""The driver's front door on the shipped fakes: preconditions, hooks, time limits, rollback on demand."""

from __future__ import annotations

import re
from typing import Any

import pytest
from drive_world import (
    NEW,
    OLD,
    SERVICE,
    Crash,
    World,
    build_world,
    promoted,
    run,
    same_release,
    stack_config,
)

from rfs_deploy.drive import events
from rfs_deploy.drive.driver import planned_seconds
from rfs_deploy.drive.hooks import HookContext, HookPhase
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.errors import InvalidInput, PreconditionFailed, StackBusy, UnknownVersion
from rfs_deploy.testing import Behaviour


def crash_before_step(index: int) -> Any:
    def listener(event: Any) -> None:
        if isinstance(event, events.StepStarted) and event.index == index:
            raise Crash(f"killed before step {index + 1}")

    return listener


def leave_open(world: World, strategy: str = "canary", index: int = 5) -> None:
    """A deployment killed before step ``index + 1``: open in stack history."""
    with pytest.raises(Crash):
        world.deploy(strategy, listeners=[crash_before_step(index)])
    assert world.latest().open


# --------------------------------------------------------------------------- preconditions


def test_an_alarm_already_firing_on_the_live_slot_stops_the_deployment(world: World) -> None:
    world.alarms.firing_names = {f"{SERVICE}-blue-5xx"}

    with pytest.raises(PreconditionFailed, match=f"alarm {SERVICE}-blue-5xx of the live slot"):
        world.deploy("canary")

    assert world.stack.updates == 0
    assert len(world.stack.history()) == 1
    assert world.release() == world.start


@pytest.mark.parametrize(
    ("version", "image", "problem"),
    [
        ("v13$(touch /tmp/pwned)", None, "is not a version"),
        ("v2`id`", None, "is not a version"),
        ("v2.0.0\n", None, "is not a version"),
        ("v2.0.0", "ami-1234; reboot", "--ami 'ami-1234; reboot' is not an AMI id"),
    ],
)
def test_a_version_or_image_that_is_not_one_is_refused_before_anything(
    world: World, version: str, image: str | None, problem: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(problem)):
        run(world.driver().deploy(SERVICE, version, "canary", image=image))
    if image is None:
        with pytest.raises(InvalidInput, match=re.escape(problem)):
            world.driver().plan(SERVICE, version, "canary")
    assert world.stack.updates == 0
    assert world.release() == world.start


def test_an_alarm_on_the_idle_slot_does_not_block(world: World) -> None:
    world.alarms.firing_names = {f"{SERVICE}-green-cpu"}  # the idle slot has no instances yet

    def clear(event: Any) -> None:
        if isinstance(event, events.StepStarted) and event.kind == "wait-healthy":
            world.alarms.firing_names.clear()

    assert world.deploy("blue-green", listeners=[clear]).status is DeploymentStatus.COMPLETED


def test_an_open_deployment_blocks_a_second_one(world: World) -> None:
    leave_open(world)
    updates = world.stack.updates

    with pytest.raises(StackBusy) as caught:
        world.deploy("blue-green")

    message = str(caught.value)
    assert "rfs-deploy resume --stack test" in message
    assert "rfs-deploy abort --stack test" in message
    assert world.latest().deployment_id in message
    assert world.stack.updates == updates


def test_a_locked_stack_is_reported_without_a_rollback(world: World) -> None:
    world.stack.locked_by = "someone else's pulumi up"

    with pytest.raises(StackBusy, match="locked by another update"):
        world.deploy("blue-green")

    assert world.stack.updates == 0 and len(world.stack.history()) == 1


@pytest.mark.parametrize(
    ("version", "strategy", "message"),
    [
        (OLD, "canary", "already live"),
        ("v9.9.9", "canary", "has no image"),
        (NEW, "linear", "unknown strategy 'linear'"),
    ],
)
def test_bad_input_is_refused_before_anything_changes(
    world: World, version: str, strategy: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        world.deploy(strategy, version=version)
    assert world.stack.updates == 0


def test_a_config_that_differs_from_the_last_update_is_refused(world: World) -> None:
    releases = dict(world.stack.read_config().release)
    releases[SERVICE] = world.start.with_slot("blue", capacity=4)
    world.stack.write_release(releases)  # edited but never applied: no real checkpoint

    with pytest.raises(InvalidInput, match="run `pulumi up` first"):
        world.deploy("blue-green")
    assert world.stack.updates == 0


# --------------------------------------------------------------------------- plan and time limits


def test_plan_changes_nothing(world: World) -> None:
    _, strategy, release, steps = world.driver().plan(SERVICE, NEW, "blue-green")

    assert strategy.type == "blue-green"
    assert release == world.start
    assert [s.kind for s in steps][:3] == ["deploy-idle", "wait-healthy", "validate"]
    assert planned_seconds(steps) == 60 + 300 + 300
    assert world.stack.updates == 0 and world.clock.slept == 0


def test_a_plan_longer_than_the_deployment_timeout_is_refused_up_front() -> None:
    world = build_world(service_changes={"deploy": {"deploymentTimeout": 600}})

    with pytest.raises(InvalidInput, match=r"schedules 660s but deploy\.deploymentTimeout is 600s"):
        world.deploy("blue-green")
    assert world.stack.updates == 0 and world.clock.slept == 0


def test_per_deployment_overrides_count_against_the_timeout(world: World) -> None:
    with pytest.raises(InvalidInput, match="deploymentTimeout"):
        world.deploy("ab-test", overrides={"strategy": {"duration": 3600}})

    record = world.deploy("ab-test", overrides={"strategy": {"duration": 600}})
    assert record.status is DeploymentStatus.COMPLETED
    assert world.clock.slept == pytest.approx(600, abs=60)


@pytest.mark.parametrize("key", ["maxErrorRate", "max_error_rate"])
def test_overrides_may_spell_settings_in_camel_or_snake_case(key: str) -> None:
    from rfs_deploy.drive.driver import resolve

    service = stack_config().services[SERVICE]
    svc, strat = resolve(service, "canary", {"analysis": {key: 0.02}, "strategy": {"canary_percentage": 20}})
    assert svc.analysis.max_error_rate == 0.02
    assert strat.type == "canary" and strat.canary_percentage == 20
    assert svc.analysis.min_requests == service.analysis.min_requests  # the rest is the config's


def test_the_deployment_timeout_caps_the_whole_run() -> None:
    # 660 s planned + 600 s allowed overrun, capped at 700 s: ten inconclusive minutes are too many
    world = build_world(
        service_changes={"deploy": {"deploymentTimeout": 700}, "analysis": {"maxInconclusive": 20}}
    )
    world.metrics.missing = 10

    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("exceeded its time budget" in e for e in record.errors), record.errors
    assert world.release() == world.start


def test_auto_rollback_off_leaves_the_stack_and_says_how_to_finish() -> None:
    # without the load probe the slow version is switched to and fails its bake: a failure
    # with all traffic on the new slot, which is what auto rollback off must leave alone
    no_probe = {"validation": {"probe": {"requests": 0}}}
    world = build_world(
        {NEW: Behaviour(p99=3.0)}, service_changes={"deploy": {"autoRollback": False}, **no_probe}
    )

    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.FAILED
    assert any("auto rollback is off" in e for e in record.errors)
    assert world.applied().weights["green"] == 100  # left where it failed, as asked
    assert record.recovery is not None
    finish = record.recovery.split()
    assert finish[0] == "rfs-deploy"
    driver = world.driver()
    done = run(driver.abort(SERVICE) if finish[1] == "abort" else driver.rollback(SERVICE, int(finish[-1])))
    assert done.status is DeploymentStatus.ROLLED_BACK
    assert world.release() == world.start and world.applied() == world.start
    assert not world.latest().open


# --------------------------------------------------------------------------- hooks


def test_pre_hooks_run_in_order_before_the_first_update(world: World) -> None:
    seen: list[tuple[str, int, str]] = []

    def first(ctx: HookContext) -> None:
        assert ctx.phase is HookPhase.PRE_DEPLOYMENT
        seen.append(("first", world.stack.updates, ctx.version))

    async def second(ctx: HookContext) -> bool:
        seen.append(("second", world.stack.updates, ctx.previous_version or ""))
        return True

    world.hooks.pre_deployment.extend([first, second])
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.COMPLETED
    assert seen == [("first", 0, NEW), ("second", 0, OLD)]


def test_a_failing_pre_hook_changes_nothing(world: World) -> None:
    ran: list[str] = []

    def change_freeze(ctx: HookContext) -> bool:
        return False

    world.hooks.pre_deployment.extend([change_freeze, lambda ctx: ran.append("after")])
    record = world.deploy("canary")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("change_freeze" in e and "nothing was changed" in e for e in record.errors), record.errors
    assert ran == []
    assert world.stack.updates == 0 and world.release() == world.start
    assert record.ended_at is not None


def test_validation_hooks_run_at_the_validate_step_before_traffic_moves(world: World) -> None:
    seen: list[dict[str, Any]] = []

    def check(ctx: HookContext) -> None:
        started = [e for e in world.events if isinstance(e, events.StepStarted)]
        seen.append(
            {
                "step": started[-1].kind,
                "phase": ctx.phase,
                "base_url": ctx.base_url,
                "idle": world.applied().slot("green").version,
                "weight": world.applied().weights["green"],
            }
        )

    world.hooks.validation.append(check)
    record = world.deploy("canary")

    assert record.status is DeploymentStatus.COMPLETED
    assert seen == [
        {
            "step": "validate",
            "phase": HookPhase.VALIDATION,
            "base_url": f"http://{SERVICE}-123.us-east-1.elb.amazonaws.com:8443",
            "idle": NEW,
            "weight": 0,
        }
    ]
    critical = world.config_service().validation.critical_endpoints
    assert [path for path, _ in world.http_requests] == ["/health", "/version", *critical]
    assert {version for _, version in world.http_requests} == {NEW}


def test_a_failing_validation_hook_rolls_back_before_traffic_moves(world: World) -> None:
    def smoke(ctx: HookContext) -> None:
        raise RuntimeError("checkout returns 500")

    world.hooks.validation.append(smoke)
    record = world.deploy("canary")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("checkout returns 500" in e for e in record.errors)
    assert all((e.release or {})[SERVICE].weights["green"] == 0 for e in world.stack.history())
    assert world.http_requests == []  # HTTP checks only after the hooks pass
    assert world.release() == world.start


def test_post_hooks_run_after_completion(world: World) -> None:
    seen: list[tuple[HookPhase, str, str, int]] = []

    def notify(ctx: HookContext) -> None:
        seen.append((ctx.phase, ctx.result.status.value, world.latest().status, world.stack.updates))

    world.hooks.post_deployment.append(notify)
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.COMPLETED
    assert seen == [(HookPhase.POST_DEPLOYMENT, "COMPLETED", "completed", world.stack.updates)]


def test_post_hooks_do_not_run_after_a_rollback() -> None:
    world = build_world({NEW: Behaviour(p99=3.0)})
    ran: list[str] = []
    world.hooks.post_deployment.append(lambda ctx: ran.append("post"))

    assert world.deploy("blue-green").status is DeploymentStatus.ROLLED_BACK
    assert ran == []


def test_a_failing_post_hook_does_not_undo_the_deployment(world: World) -> None:
    def notify(ctx: HookContext) -> None:
        raise ConnectionError("chat is down")

    world.hooks.post_deployment.append(notify)
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.COMPLETED
    assert any("post-deployment hook notify failed" in e and "chat is down" in e for e in record.errors)
    assert same_release(world.release(), promoted("blue-green", world.start))
    assert world.latest().status == "completed"


# --------------------------------------------------------------------------- rollback on demand


def test_rollback_to_a_version_restores_its_release(world: World) -> None:
    assert world.deploy("blue-green").status is DeploymentStatus.COMPLETED
    updates = world.stack.updates

    record = run(world.driver().rollback(SERVICE, to_version=1))

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert record.rolled_back_to == 1
    assert record.version == OLD
    # the restoring update, then the one confirming the load balancer and fleet show it
    assert world.stack.updates == updates + 2
    assert [t.kind for t in world.tags()[-2:]] == ["rollback", "restored"]
    assert world.release() == world.start and world.applied() == world.start
    assert world.latest().status == "rolled-back"


def test_rollback_without_a_version_restores_the_state_before_the_last_deployment(world: World) -> None:
    world.deploy("rolling")
    assert world.applied().slot("blue").version == NEW

    record = run(world.driver().rollback(SERVICE))

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert record.rolled_back_to == 1
    assert world.release() == world.start and world.applied() == world.start


def test_a_second_bare_rollback_does_not_bring_back_what_the_first_rolled_away(world: World) -> None:
    assert world.deploy("blue-green").status is DeploymentStatus.COMPLETED
    assert run(world.driver().rollback(SERVICE)).status is DeploymentStatus.ROLLED_BACK
    assert world.applied() == world.start
    updates = world.stack.updates

    again = run(world.driver().rollback(SERVICE))

    assert again.status is DeploymentStatus.COMPLETED
    assert world.stack.updates == updates  # nothing changed
    assert any("nothing to roll back" in e for e in again.errors)
    assert world.release() == world.start and world.applied() == world.start


def test_rollback_with_nothing_to_roll_back_says_so(world: World) -> None:
    updates = world.stack.updates
    record = run(world.driver().rollback(SERVICE))  # a stack that never had a release
    assert record.status is DeploymentStatus.COMPLETED
    assert any("nothing to roll back" in e for e in record.errors)
    assert world.stack.updates == updates


def test_rollback_forward_again_to_the_promoted_version(world: World) -> None:
    world.deploy("blue-green")
    promoted_version = world.stack.history()[0].version
    run(world.driver().rollback(SERVICE, to_version=1))

    record = run(world.driver().rollback(SERVICE, to_version=promoted_version))

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert same_release(world.release(), promoted("blue-green", world.start))
    assert world.applied() == world.release()


@pytest.mark.parametrize("version", [0, 99])
def test_rollback_to_an_unknown_version_is_refused(world: World, version: int) -> None:
    world.deploy("blue-green")
    updates = world.stack.updates

    with pytest.raises(UnknownVersion, match=f"no version {version}"):
        run(world.driver().rollback(SERVICE, to_version=version))
    assert world.stack.updates == updates


def test_a_failed_first_update_rolls_back_and_cannot_be_a_rollback_target(world: World) -> None:
    world.stack.fail_updates = 1
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("step 1 (deploy-idle): update failed" in e for e in record.errors), record.errors
    failed = world.stack.history()[2]  # newest first: confirmation, restore, the failed update
    assert failed.result == "failed"
    assert world.release() == world.start and world.applied() == world.start

    with pytest.raises(UnknownVersion, match="did not succeed"):
        run(world.driver().rollback(SERVICE, to_version=failed.version))


@pytest.mark.parametrize("verb", ["abort", "resume"])
def test_a_takeover_overtaken_by_the_deployment_finishing_changes_nothing(world: World, verb: str) -> None:
    """``abort`` (or ``resume``) decided on an open deployment, then its update is refused by the
    program's compare-and-swap: the deployment's owner finished it meanwhile. Not retried (that
    would restore the checkpoint over a completed release), and the error says what happened."""
    leave_open(world, "canary", index=5)
    before = world.latest()

    world.finished_meanwhile(before.last_tag, "the owner finished the deployment")
    updates = world.stack.updates
    driver = world.driver()
    with pytest.raises(StackBusy) as caught:
        run(driver.abort(SERVICE) if verb == "abort" else driver.resume(SERVICE))

    text = str(caught.value)
    assert f"deployment {before.deployment_id} ended completed meanwhile" in text
    assert f"this {verb} changed nothing" in text
    assert world.stack.updates == updates + 2  # the refused update and the owner's, no retry
    assert world.latest().status == "completed"


def test_rollback_while_a_deployment_is_open_is_refused(world: World) -> None:
    leave_open(world)
    updates = world.stack.updates

    with pytest.raises(StackBusy) as caught:
        run(world.driver().rollback(SERVICE, to_version=1))

    assert "rfs-deploy abort --stack test" in str(caught.value)
    assert world.stack.updates == updates


def test_the_saved_record_holds_each_verdict_while_its_step_runs(tmp_path: Any) -> None:
    """``status --watch`` and the dashboard read the record store: the first verdict of an
    analysis is in the saved record when its event goes out, before the step ends."""
    from rfs_deploy.drive.driver import Driver
    from rfs_deploy.drive.records import RecordStore

    world = build_world()
    store = RecordStore(tmp_path)
    seen: list[tuple[int, int, list[str]]] = []

    def on_event(event: Any) -> None:
        if isinstance(event, events.Tick) and not seen:
            saved = store.load(event.deployment_id)
            seen.append((event.step, len(saved.verdicts), [s.outcome for s in saved.steps]))

    record = run(Driver(world.seams([on_event], records=store)).deploy(SERVICE, NEW, "canary"))
    assert record.status is DeploymentStatus.COMPLETED
    (_step, verdicts, outcomes) = seen[0]
    assert verdicts == 1
    assert outcomes[-1] == "running", "saved while the analysis step still runs"
