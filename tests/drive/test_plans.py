"""Plans per strategy: exact step tables, replay through ReleaseState validation, refusals."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfs_deploy.config.model import (
    ABTest,
    Analysis,
    Artifact,
    BlueGreen,
    Canary,
    DeploySettings,
    HealthCheck,
    ReleaseState,
    Rolling,
    ServiceConfig,
    SlotName,
    SlotState,
    Strategy,
    Variants,
    other_slot,
)
from rfs_deploy.drive.plans import describe, plan, planned_seconds, replay
from rfs_deploy.drive.steps import (
    Analyze,
    Change,
    Decide,
    DeployIdle,
    FinishRefresh,
    Gate,
    Pause,
    Promote,
    RollRefresh,
    ScaleDown,
    ScaleIdle,
    SetWeight,
    StartVariants,
    Step,
    Validate,
    WaitHealthy,
    WatchRefresh,
)
from rfs_deploy.errors import InvalidInput

OLD, NEW = "v1.0.0", "v2.0.0"


def service(**changes: object) -> ServiceConfig:
    data: dict[str, object] = {
        "artifact": Artifact(amis={OLD: "ami-0aa1100000000a100", NEW: "ami-0aa1100000000a200"}),
        "instance_count": 10,
    }
    data.update(changes)
    return ServiceConfig.model_validate(data)


def start(live: SlotName = "blue") -> ReleaseState:
    """A steady state: OLD live with 10 instances, the other slot empty."""
    idle = other_slot(live)
    return ReleaseState.model_validate(
        {"live": live, "weights": {live: 100, idle: 0}, live: {"version": OLD, "capacity": 10}, idle: {}}
    )


PREPARE = (DeployIdle(NEW, 10), WaitHealthy(600), Validate(NEW))


def prepare_small(capacity: int) -> tuple[Step, ...]:
    """A canary's start: the idle slot at its first weight's share of the ten instances."""
    return (DeployIdle(NEW, capacity), WaitHealthy(600), Validate(NEW))


def grow(capacity: int, weight: int) -> ScaleIdle:
    """A canary's scale step before ``weight``, waiting as long as the first health wait."""
    return ScaleIdle(capacity, weight, 600)


#: Blue-green's switch moves everyone at once, so its validation also runs the load probe.
PREPARE_PROBED = (DeployIdle(NEW, 10), WaitHealthy(600), Validate(NEW, probe=True))

PLANS: list[tuple[str, Strategy, tuple[Step, ...]]] = [
    (
        "blue-green defaults",
        BlueGreen(),
        (
            *PREPARE_PROBED,
            Pause(60, "switch delay"),
            SetWeight(100),
            Analyze(300, 60, baseline=False),
            Promote(),
            Pause(300, "scale-down delay"),
            ScaleDown(),
        ),
    ),
    (
        "blue-green without delays or bake",
        BlueGreen(switch_delay=0, validation_duration=0, scale_down_delay=0),
        (*PREPARE_PROBED, SetWeight(100), Promote(), ScaleDown()),
    ),
    (
        "canary explicit steps with stickiness",
        Canary(steps=[5, 25, 50], canary_interval=120, stickiness_duration=3600, scale_down_delay=30),
        (
            *prepare_small(1),
            SetWeight(5, 3600),
            Analyze(120, 60, baseline=True),
            grow(5, 25),
            SetWeight(25, 3600),
            Analyze(120, 60, baseline=True),
            SetWeight(50, 3600),
            Analyze(120, 60, baseline=True),
            grow(10, 100),
            SetWeight(100),
            Analyze(120, 60, baseline=False),
            Promote(),
            Pause(30, "scale-down delay"),
            ScaleDown(),
        ),
    ),
    (
        "canary 40 % then 30 % increments",
        Canary(canary_percentage=40, canary_increment=30, canary_interval=60),
        (
            *prepare_small(4),
            SetWeight(40),
            Analyze(60, 60, baseline=True),
            grow(10, 70),
            SetWeight(70),
            Analyze(60, 60, baseline=True),
            SetWeight(100),
            Analyze(60, 60, baseline=False),
            Promote(),
            ScaleDown(),
        ),
    ),
    (
        "canary straight to 100",
        Canary(steps=[100], canary_interval=30),
        (*PREPARE, SetWeight(100), Analyze(30, 30, baseline=False), Promote(), ScaleDown()),
    ),
    (
        "canary step list with gates",
        Canary.model_validate(
            {
                "canaryInterval": "2m",
                "stickinessDuration": "1h",
                "steps": [
                    {"pause": {}},
                    {"setWeight": 10},
                    {"analyze": "5m"},
                    {"pause": "2m"},
                    {"pause": {}},
                    {"setWeight": 20},
                    {"setWeight": 50},
                    {"analyze": {"duration": "10m", "interval": "90s"}},
                    {"pause": "until-promoted"},
                ],
            }
        ),
        (
            *prepare_small(1),
            Gate("canary before any traffic"),
            SetWeight(10, 3600),
            Analyze(300, 60, baseline=True),
            Pause(120, "pause, canary at 10 %"),
            Gate("canary at 10 %"),
            # a weight without analyze is not judged: the list is obeyed as written
            grow(4, 20),
            SetWeight(20, 3600),
            grow(10, 50),
            SetWeight(50, 3600),
            Analyze(600, 90, baseline=True),
            Gate("canary at 50 %"),
            # the list stops short of 100 %: the usual last two steps follow it
            SetWeight(100),
            Analyze(120, 60, baseline=False),
            Promote(),
            ScaleDown(),
        ),
    ),
    (
        "canary step list reaching 100 itself",
        Canary.model_validate(
            {
                "steps": [
                    {"setWeight": 25},
                    {"analyze": {}},
                    {"setWeight": 100},
                    {"pause": {}},
                    {"analyze": {"duration": "30s", "interval": "1m"}},
                ],
                "scaleDownDelay": "1m",
            }
        ),
        (
            *prepare_small(3),
            SetWeight(25),
            Analyze(60, 60, baseline=True),
            grow(10, 100),
            SetWeight(100),
            Gate("canary at 100 %"),
            # at 100 % no baseline; an interval longer than the window is the window
            Analyze(30, 30, baseline=False),
            Promote(),
            Pause(60, "scale-down delay"),
            ScaleDown(),
        ),
    ),
    (
        "blue-green held before the switch",
        BlueGreen.model_validate({"steps": [{"pause": "1m"}, {"pause": {}}], "switchDelay": "30s"}),
        (
            *PREPARE_PROBED,
            Pause(60, "pause, before the switch"),
            Gate("before the switch"),
            Pause(30, "switch delay"),
            SetWeight(100),
            Analyze(300, 60, baseline=False),
            Promote(),
            Pause(300, "scale-down delay"),
            ScaleDown(),
        ),
    ),
    (
        "rolling",
        Rolling(batch_size=3, batch_interval=45),
        (
            RollRefresh(NEW, rolling=Rolling(batch_size=3, batch_interval=45)),
            # 4 batches x (grace 120 + 3 checks x 30 s, then batchInterval 45) = 1020 s expected,
            # plus maxDeploymentTime 600 of allowed overrun
            WatchRefresh(timeout=1620, interval=60, expected=1020),
            Analyze(60, 60, baseline=False),
            FinishRefresh(),
        ),
    ),
    (
        "a/b test",
        ABTest(
            split=20, duration=1800, header="X-Try", cookie="try", stickiness_duration=600, rule_priority=7
        ),
        (
            *PREPARE,
            StartVariants(split=20, stickiness=600, header="X-Try", cookie="try", rule_priority=7),
            Decide(duration=1800, interval=60),
            Promote(),
            ScaleDown(),
        ),
    ),
    (
        "a/b test confirmed before promotion",
        ABTest.model_validate({"duration": "30m", "steps": [{"pause": {}}, {"pause": "5m"}]}),
        (
            *PREPARE,
            StartVariants(
                split=50, stickiness=86400, header="X-Variant", cookie="variant", rule_priority=100
            ),
            Decide(duration=1800, interval=60),
            Gate("B won, before promotion"),
            Pause(300, "pause, B won, before promotion"),
            Promote(),
            ScaleDown(),
        ),
    ),
]


@pytest.mark.parametrize(("strategy", "expected"), [p[1:] for p in PLANS], ids=[p[0] for p in PLANS])
def test_plan_steps(strategy: Strategy, expected: tuple[Step, ...]) -> None:
    assert plan(service(), strategy, start(), NEW) == expected


def test_default_canary_walks_ten_percent_steps() -> None:
    steps = plan(service(), Canary(), start(), NEW)
    weights = [s.weight for s in steps if isinstance(s, SetWeight)]
    assert weights == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert [s.baseline for s in steps if isinstance(s, Analyze)] == [True] * 9 + [False]


@pytest.mark.parametrize(
    ("changes", "timeout", "interval"),
    [
        ({}, 600, 60),
        # A slow health check needs longer than the deployment budget: the check wins.
        ({"health_check_grace_period": 600, "health_check": HealthCheck(interval=60, timeout=5)}, 780, 60),
        ({"deploy": DeploySettings(max_deployment_time=900, health_check_interval=120)}, 900, 120),
        ({"analysis": Analysis(period=10), "deploy": DeploySettings(health_check_interval=15)}, 600, 15),
    ],
)
def test_timings_come_from_the_service(changes: dict[str, object], timeout: int, interval: int) -> None:
    steps = plan(service(**changes), BlueGreen(validation_duration=600), start(), NEW)
    assert WaitHealthy(timeout) in steps
    assert Analyze(600, interval, baseline=False) in steps


def test_analysis_interval_never_exceeds_the_step() -> None:
    steps = plan(service(), Canary(steps=[50], canary_interval=20), start(), NEW)
    assert {s.interval for s in steps if isinstance(s, Analyze)} == {20}


# --------------------------------------------------------------------------- replay


def _final_expectation(strategy: Strategy, live: SlotName) -> ReleaseState:
    new = other_slot(live)
    if isinstance(strategy, Rolling):
        # the refresh settings are recorded for the release and removed when it ends
        return start(live).with_slot(live, version=NEW)
    return ReleaseState.model_validate(
        {
            "live": new,
            "weights": {new: 100, live: 0},
            new: {"version": NEW, "capacity": 10},
            live: {"version": OLD, "capacity": 0},
        }
    )


@pytest.mark.parametrize("live", ["blue", "green"])
@pytest.mark.parametrize("strategy", [p[1] for p in PLANS], ids=[p[0] for p in PLANS])
def test_replay_ends_promoted_and_consistent(strategy: Strategy, live: SlotName) -> None:
    steps = plan(service(), strategy, start(live), NEW)
    assert replay(start(live), steps) == _final_expectation(strategy, live)


@pytest.mark.parametrize("strategy", [p[1] for p in PLANS], ids=[p[0] for p in PLANS])
def test_every_observation_sees_traffic_where_it_looks(strategy: Strategy) -> None:
    """A baseline analysis runs with traffic on both slots; others with all traffic on the new version."""
    release = start()
    for step in plan(service(), strategy, release, NEW):
        if isinstance(step, Change):
            release = step.apply(release)
        elif isinstance(step, Analyze | Decide):
            slot = release.judged_slot(NEW)
            assert release.slot(slot).version == NEW
            if isinstance(step, Decide) or step.baseline:
                assert slot != release.live and release.weights[release.live] > 0
            else:
                assert release.weights[slot] == 100
        elif isinstance(step, WaitHealthy | Validate):
            assert release.slot(release.idle).version == NEW and release.weights[release.idle] == 0


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(st.integers(1, 100), min_size=1, max_size=8, unique=True).map(sorted),
    count=st.integers(1, 50),
    live=st.sampled_from(["blue", "green"]),
)
def test_any_canary_replays_to_promoted(steps: list[int], count: int, live: SlotName) -> None:
    svc = service(instance_count=count)
    steps_plan = plan(svc, Canary(steps=steps), start(live), NEW)
    final = replay(start(live), steps_plan)
    assert final.live == other_slot(live)
    assert final.weights[final.live] == 100
    assert final.slot(final.live) == SlotState(version=NEW, capacity=count)
    assert final.slot(live).capacity == 0


# --------------------------------------------------------------------------- refusals


def _in_progress() -> ReleaseState:
    return start().with_slot("green", version=NEW, capacity=10).evolve(weights={"blue": 80, "green": 20})


def _ab_rules_left() -> ReleaseState:
    return start().evolve(variants=Variants())


REFUSALS = [
    ("already live", service(), start(), OLD, "'v1.0.0' is already live (slot blue)"),
    ("idle carries traffic", service(), _in_progress(), "v3.0.0", "slot green still carries 20% of traffic"),
    ("a/b rules still on", service(), _ab_rules_left(), NEW, "a deployment is in progress"),
    ("no image", service(), start(), "v9.9.9", "'v9.9.9' has no image"),
    ("empty version", service(), start(), " ", "must not be empty"),
]


#: After each weight of a generated list: nothing, an analysis, a timed pause, a gate.
_AFTER: list[list[dict[str, object]]] = [[], [{"analyze": "1m"}], [{"pause": "30s"}], [{"pause": {}}]]


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(st.integers(1, 100), min_size=1, max_size=8, unique=True).map(sorted),
    after=st.lists(st.sampled_from(range(len(_AFTER))), min_size=8, max_size=8),
    live=st.sampled_from(["blue", "green"]),
)
def test_any_step_list_replays_to_promoted(weights: list[int], after: list[int], live: SlotName) -> None:
    items: list[dict[str, object]] = [{"pause": {}}]
    for weight, extra in zip(weights, after, strict=False):
        items += [{"setWeight": weight}, *_AFTER[extra]]
    strategy = Canary.model_validate({"steps": items})
    steps = plan(service(), strategy, start(live), NEW)
    assert replay(start(live), steps) == _final_expectation(strategy, live)
    # every weight written is set, in order, and 100 % comes last before the promotion
    set_weights = [s.weight for s in steps if isinstance(s, SetWeight)]
    assert set_weights == (weights if weights[-1] == 100 else [*weights, 100])
    gates = [s for s in steps if isinstance(s, Gate)]
    assert len(gates) == 1 + sum(1 for extra in after[: len(weights)] if extra == 3)


@pytest.mark.parametrize("strategy", [p[1] for p in PLANS], ids=[p[0] for p in PLANS])
@pytest.mark.parametrize(
    ("svc", "release", "version", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_bad_starting_points_are_refused(
    strategy: Strategy, svc: ServiceConfig, release: ReleaseState, version: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)) as caught:
        plan(svc, strategy, release, version)
    assert "\n" not in str(caught.value)


def test_default_ami_makes_any_version_deployable() -> None:
    svc = service(artifact=Artifact(default_ami="ami-0aa1100000000a999"))
    assert plan(svc, BlueGreen(), start(), "v7")[0] == DeployIdle("v7", 10)


def test_described_plan_is_numbered_text() -> None:
    lines = describe(plan(service(), Canary(steps=[50]), start(), NEW))
    assert lines[0] == " 1. deploy v2.0.0 to the idle slot (5 instances)"
    assert " 4. set weight 50%" in lines
    assert (
        " 6. scale the idle slot to 10 instances for 100% and wait until they are healthy (at most 600s)"
        in lines
    )
    assert lines[-1].endswith("scale the old slot to zero")


# --------------------------------------------------------------------------- judged slot and schedule


def test_the_judged_slot_is_the_one_running_the_release() -> None:
    steady = start()
    assert steady.judged_slot(NEW) == "blue"  # nothing deployed yet: the live slot
    deployed = steady.with_slot("green", version=NEW, capacity=10)
    assert deployed.judged_slot(NEW) == "green"  # on the idle slot, before any traffic
    stepped = deployed.evolve(weights={"blue": 90, "green": 10})
    assert stepped.judged_slot(NEW) == "green"
    # a scaled-down idle slot that once ran the version is not judged; nor is another version
    assert steady.with_slot("green", version=NEW, capacity=0).judged_slot(NEW) == "blue"
    assert deployed.judged_slot("v3.0.0") == "blue"
    # rolling: the live slot itself runs the release
    assert steady.with_slot("blue", version=NEW).judged_slot(NEW) == "blue"
    # promoted: the new version is live
    assert replay(steady, plan(service(), Canary(), steady, NEW)).judged_slot(NEW) == "green"


@pytest.mark.parametrize(
    ("strategy", "scheduled"),
    [
        # switch delay + bake + scale-down delay
        (BlueGreen(), 60 + 300 + 300),
        # nine partial weights and the 100 % window, 60 s each
        (Canary(), 10 * 60),
        # the refresh's expected 1020 s and the final window
        (Rolling(batch_size=3, batch_interval=45), 1020 + 60),
        (ABTest(duration=1800), 1800),
        # analyze 5m, pause 2m, the 100 % window 60 s; the gates schedule nothing
        (
            Canary.model_validate(
                {
                    "steps": [
                        {"setWeight": 10},
                        {"analyze": "5m"},
                        {"pause": {}},
                        {"pause": "2m"},
                        {"pause": {}},
                    ]
                }
            ),
            300 + 120 + 60,
        ),
        (BlueGreen.model_validate({"steps": [{"pause": {}}]}), 60 + 300 + 300),
    ],
    ids=["blue-green", "canary", "rolling", "ab-test", "canary step list", "blue-green gate"],
)
def test_planned_seconds_counts_what_a_plan_schedules(strategy: Strategy, scheduled: int) -> None:
    assert planned_seconds(plan(service(), strategy, start(), NEW)) == scheduled
    assert planned_seconds(plan(service(warmup=45), strategy, start(), NEW)) == scheduled + (
        0 if isinstance(strategy, Rolling) else 45
    )
