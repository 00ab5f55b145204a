"""A release of an autoscaled service starts from the live fleet's size (docs/sizing.md): the
driver reads the live group's desired capacity, pins the live slot there for the release and
releases the new version at that size; a resume in a new process rebuilds the same plan from
the journal, whatever the group or the stack file says by then."""

from __future__ import annotations

from typing import Any

import pytest
from drive_world import SERVICE, STRATEGIES, Crash, World, build_world, run

from rfs_deploy.drive import events, journal
from rfs_deploy.drive.plans.common import adopt_fleet
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.drive.steps import DeployIdle, RollRefresh, ScaleIdle

SCALING = {"instanceCount": 4, "autoscaling": {"min": 2, "max": 12, "targetCpu": 60}}


def scaled_world(size: int | None = 9) -> World:
    """The production stack autoscaled (4 on record), its live group scaled to ``size``."""
    world = build_world(service_changes=SCALING)
    start = world.start.evolve(**{world.start.live: {"version": "v1.0.0", "capacity": 4}})
    world.stack.write_release({SERVICE: start})
    world.stack.up("release state: four instances on record")
    world.start = start
    if size is not None:
        asg = world.cloud.outputs[SERVICE].slot(start.live).asg_name
        world.fleet.sizes[asg] = size
    return world


def live_capacities(world: World) -> list[int]:
    """The live slot's recorded capacity in every update of the deployment, oldest first."""
    live = world.start.live
    found = []
    for entry in reversed(world.stack.history()):
        tag = journal.decode(entry.message)
        if tag is not None and tag.phase == "step" and entry.release is not None:
            found.append(entry.release[SERVICE].slot(live).capacity)
    return found


def test_adopt_fleet_moves_the_size_into_the_bounds_and_leaves_other_services_alone() -> None:
    world = scaled_world()
    svc, start = world.config_service(), world.start
    assert adopt_fleet(svc, start, 9)[0].instance_count == 9
    assert adopt_fleet(svc, start, 9)[1].slot(start.live).capacity == 9
    assert adopt_fleet(svc, start, 40)[0].instance_count == 12  # a size past max: max
    assert adopt_fleet(svc, start, 1)[0].instance_count == 2  # below min: min
    assert adopt_fleet(svc, start, None)[0].instance_count == 4  # no group: the recorded size
    pinned = build_world().config_service()  # no autoscaling: nothing is adopted
    assert adopt_fleet(pinned, start, 9) == (pinned, start)
    mid_release = start.with_slot(start.idle, version="v2.0.0", capacity=1)
    assert adopt_fleet(svc, mid_release, 9) == (svc, mid_release)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_plan_pins_the_live_slot_at_the_fleets_size_and_releases_at_it(strategy: str) -> None:
    svc, _, release, steps = scaled_world().driver().plan(SERVICE, "v2.0.0", strategy)
    assert svc.instance_count == 9 and release.slot(release.live).capacity == 9
    first = steps[0]
    assert isinstance(first, DeployIdle | RollRefresh) and first.live_capacity == 9
    if isinstance(first, DeployIdle) and strategy != "canary":
        assert first.capacity == 9  # blue-green and A/B start the new slot at full size
    scales = [s.capacity for s in steps if isinstance(s, ScaleIdle)]
    assert not scales or scales[-1] == 9


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_release_never_shrinks_the_scaled_live_fleet_and_ends_at_its_size(strategy: str) -> None:
    world = scaled_world()
    record = world.deploy(strategy)
    assert record.status is DeploymentStatus.COMPLETED, record.errors
    end = world.release()
    assert end.slot(end.live).capacity == 9
    capacities = live_capacities(world)
    if strategy == "rolling":
        assert set(capacities) == {9}
    else:  # the old live slot carries the production share at nine until it is scaled down
        assert capacities[:-1] == [9] * (len(capacities) - 1) and capacities[-1] == 0


def crash_before(k: int) -> Any:
    def listener(event: Any) -> None:
        if isinstance(event, events.StepStarted) and event.index == k:
            raise Crash(f"killed before step {k + 1}")

    return listener


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_resume_in_a_new_process_rebuilds_the_plan_for_the_size_the_deployment_started_from(
    strategy: str,
) -> None:
    world = scaled_world()
    total = len(world.driver().plan(SERVICE, "v2.0.0", strategy)[3])
    for k in range(1, total):
        world = scaled_world()
        with pytest.raises(Crash):
            world.deploy(strategy, listeners=[crash_before(k)])
        if world.latest().finished:
            continue
        # meanwhile the group reads differently:
        # neither is the size the deployment was planned for
        asg = world.cloud.outputs[SERVICE].slot(world.start.live).asg_name
        world.fleet.sizes[asg] = 3
        record = run(world.driver().resume(SERVICE))
        assert record.status is DeploymentStatus.COMPLETED, (k, record.errors)
        end = world.release()
        assert end.slot(end.live).capacity == 9, k
        assert 3 not in live_capacities(world) and 4 not in live_capacities(world), k


def test_the_plan_digest_of_an_autoscaled_service_leaves_instance_count_out() -> None:
    svc = scaled_world().config_service()
    assert journal.settings_digest(svc) == journal.settings_digest(
        svc.model_copy(update={"instance_count": 7})
    )
    pinned = build_world().config_service()
    assert journal.settings_digest(pinned) != journal.settings_digest(
        pinned.model_copy(update={"instance_count": 7})
    )
