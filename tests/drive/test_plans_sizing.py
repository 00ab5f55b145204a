"""The canary's idle slot is sized for its weight: small at first, grown (to twice the weight's
share) before each weight that needs more instances, at full size before 100 %, and back to its
old capacity on a rollback."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rfs_deploy.config.model import ABTest, Artifact, BlueGreen, Canary, ReleaseState, ServiceConfig
from rfs_deploy.drive.plans import describe, plan, planned_seconds, replay
from rfs_deploy.drive.steps import DeployIdle, ScaleIdle, SetWeight, Step, WaitHealthy

OLD, NEW = "v1.0.0", "v2.0.0"


def service(count: int = 10, **changes: object) -> ServiceConfig:
    data: dict[str, object] = {
        "artifact": Artifact(amis={OLD: "ami-0aa1100000000a100", NEW: "ami-0aa1100000000a200"}),
        "instance_count": count,
    }
    data.update(changes)
    return ServiceConfig.model_validate(data)


def start(count: int = 10) -> ReleaseState:
    return ReleaseState.model_validate(
        {"live": "blue", "weights": {"blue": 100, "green": 0}, "blue": {"version": OLD, "capacity": count}}
    )


def capacities(steps: tuple[Step, ...], release: ReleaseState) -> list[tuple[int, int]]:
    """(weight, idle capacity) at every weight step, from the release state the plan builds."""
    seen: list[tuple[int, int]] = []
    for index, step in enumerate(steps):
        if isinstance(step, SetWeight):
            now = replay(release, steps[: index + 1])
            seen.append((step.weight, now.slot(now.idle).capacity))
    return seen


@pytest.mark.parametrize(
    ("count", "strategy", "expected"),
    [
        # the default canary of ten instances: one instance for 10 %; at 20 % room for 40 %;
        # at 50 % the full fleet
        (10, Canary(), [(10, 1), (20, 4), (30, 4), (40, 4), *((w, 10) for w in range(50, 101, 10))]),
        (
            4,
            Canary(),
            [(10, 1), (20, 1), (30, 3), (40, 3), (50, 3), (60, 3), (70, 3), (80, 4), (90, 4), (100, 4)],
        ),
        (20, Canary(steps=[5, 25, 50]), [(5, 1), (25, 10), (50, 10), (100, 20)]),
        # the minimum holds the small weights up; the share rounds up
        (10, Canary(steps=[5, 25, 50], canary_min_capacity=3), [(5, 3), (25, 3), (50, 10), (100, 10)]),
        (3, Canary(steps=[1, 34]), [(1, 1), (34, 3), (100, 3)]),
        # a minimum above the fleet is the fleet
        (2, Canary(canary_min_capacity=5, steps=[10]), [(10, 2), (100, 2)]),
        (1, Canary(), [(w, 1) for w in range(10, 101, 10)]),
        (10, Canary(steps=[100]), [(100, 10)]),
    ],
)
def test_the_idle_slot_has_the_weights_share_of_the_fleet_at_every_weight(
    count: int, strategy: Canary, expected: list[tuple[int, int]]
) -> None:
    steps = plan(service(count), strategy, start(count), NEW)
    assert capacities(steps, start(count)) == expected


def test_a_scale_step_comes_before_the_weight_it_is_for_and_only_when_it_grows() -> None:
    steps = plan(service(10), Canary(steps=[5, 8, 25]), start(), NEW)
    assert steps[0] == DeployIdle(NEW, 1)
    scales = [(i, s) for i, s in enumerate(steps) if isinstance(s, ScaleIdle)]
    # 8 % still fits on one instance: no step for it; 25 % gets the room of 50 %
    assert [(s.capacity, s.weight) for _, s in scales] == [(5, 25), (10, 100)]
    for index, scale in scales:
        following = steps[index + 1]
        assert isinstance(following, SetWeight) and following.weight == scale.weight
    # each scale waits as long as the first health wait may
    wait = next(s for s in steps if isinstance(s, WaitHealthy))
    assert {s.timeout for _, s in scales} == {wait.timeout}


def test_the_scale_steps_schedule_no_time_of_their_own() -> None:
    # like the first health wait's boot, the scale steps' boots are what the time budget's
    # overrun allows for: sizing does not make a plan schedule more (nor be refused for it)
    svc = service(10, healthCheckGracePeriod=60)
    sized = plan(svc, Canary(steps=[10, 20, 50]), start(), NEW)
    scales = [s for s in sized if isinstance(s, ScaleIdle)]
    assert scales
    full = plan(svc, Canary(steps=[10, 20, 50], canary_min_capacity=10), start(), NEW)
    assert not any(isinstance(s, ScaleIdle) for s in full)
    assert planned_seconds(sized) == planned_seconds(full)


def test_a_service_that_warms_up_starts_its_idle_slot_at_full_size() -> None:
    # an instance added to a serving slot takes its share of the traffic while still cold: by
    # default a service with a warm-up gets its whole fleet before any traffic, as before sizing
    steps = plan(service(10, warmup=45), Canary(steps=[10, 50]), start(), NEW)
    assert steps[0] == DeployIdle(NEW, 10)
    assert not any(isinstance(s, ScaleIdle) for s in steps)
    assert next(s for s in steps if isinstance(s, WaitHealthy)).warmup == 45


def test_a_small_slot_asked_for_despite_a_warmup_waits_it_out_at_every_scale_step() -> None:
    # canaryMinCapacity set: the added instances serve the current weight cold, but the next
    # weight is judged only once they are warm, and the plan schedules that warm-up
    steps = plan(service(10, warmup=45), Canary(steps=[10, 50], canary_min_capacity=1), start(), NEW)
    assert steps[0] == DeployIdle(NEW, 1)
    scales = [s for s in steps if isinstance(s, ScaleIdle)]
    assert [(s.capacity, s.warmup) for s in scales] == [(10, 45)]
    assert scales[0].health_wait() == WaitHealthy(timeout=scales[0].timeout, warmup=45)
    unsized = plan(service(10, warmup=45), Canary(steps=[10, 50]), start(), NEW)
    assert planned_seconds(steps) == planned_seconds(unsized) + 45


def test_an_explicit_step_list_is_sized_too() -> None:
    strategy = Canary.model_validate(
        {"steps": [{"pause": {}}, {"setWeight": 10}, {"analyze": "1m"}, {"setWeight": 60}, {"pause": "1m"}]}
    )
    steps = plan(service(10), strategy, start(), NEW)
    assert capacities(steps, start()) == [(10, 1), (60, 10), (100, 10)]


@pytest.mark.parametrize("strategy", [BlueGreen(), ABTest()], ids=["blue-green", "ab-test"])
def test_blue_green_and_ab_start_the_idle_slot_at_full_size(strategy: BlueGreen | ABTest) -> None:
    steps = plan(service(10), strategy, start(), NEW)
    assert steps[0] == DeployIdle(NEW, 10)
    assert not any(isinstance(s, ScaleIdle) for s in steps)


def test_the_plan_text_shows_the_capacity_of_each_sizing_step() -> None:
    lines = describe(plan(service(10), Canary(steps=[20, 30]), start(), NEW))
    assert lines[0] == " 1. deploy v2.0.0 to the idle slot (2 instances)"
    sized = [line for line in lines if "scale the idle slot" in line]
    assert sized == [
        " 6. scale the idle slot to 6 instances for 30% and wait until they are healthy (at most 600s)",
        " 9. scale the idle slot to 10 instances for 100% and wait until they are healthy (at most 600s)",
    ]


def test_a_rollback_to_the_checkpoint_restores_the_idle_slots_old_capacity() -> None:
    # the runner rolls back to the release state saved before the deployment's first change:
    # whatever the plan grew the idle slot to, that state has it at its old capacity (none)
    before = start()
    steps = plan(service(10), Canary(), before, NEW)
    midway = next(i for i, s in enumerate(steps) if isinstance(s, ScaleIdle) and s.weight == 20)
    grown = replay(before, steps[: midway + 1])
    assert grown.slot(grown.idle).capacity == 4
    assert before.slot(before.idle).capacity == 0


@given(
    count=st.integers(1, 60),
    minimum=st.integers(1, 80),
    weights=st.lists(st.integers(1, 99), min_size=1, max_size=8, unique=True).map(sorted),
)
def test_any_canary_grows_monotonically_covers_every_weight_and_ends_full(
    count: int, minimum: int, weights: list[int]
) -> None:
    strategy = Canary(steps=weights, canary_min_capacity=minimum)
    steps = plan(service(count), strategy, start(count), NEW)
    seen = capacities(steps, start(count))
    assert [w for w, _ in seen] == [*weights, 100]
    sizes = [c for _, c in seen]
    assert sizes == sorted(sizes) and sizes[-1] == count
    for weight, capacity in seen:
        assert capacity >= min(count, minimum)
        # enough instances for the weight's share of the fleet, at most the share of twice it
        assert capacity * 100 >= weight * count
        assert capacity <= strategy.capacity_for(min(100, 2 * weight), count)
    final = replay(start(count), steps)
    assert final.slot(final.live).capacity == count and final.slot(final.idle).capacity == 0
