"""The program's graph follows the release state the driver writes: a table of release states.

Every case runs the real program on the production stack (api-service, 10 instances, canary)
with ``release`` replaced, and checks traffic weights, the test listener's slot, stickiness, the
A/B rules, what each slot boots and runs, and the refresh preferences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from infra_helpers import PRODUCTION, ServiceView, as_plain

from rfs_deploy.config import SLOTS, load_stack_file
from rfs_deploy.sim.mockrun import run_stack_file

SERVICE = "api-service"
AMI = load_stack_file(PRODUCTION).services[SERVICE].artifact.amis


@dataclass(frozen=True)
class Case:
    release: dict[str, Any]
    #: Percent of traffic per slot on the production listener.
    weights: dict[str, int]
    #: The slot behind the test listener.
    test_slot: str
    #: Version each slot's launch template boots.
    boots: dict[str, str]
    capacity: dict[str, int]
    stickiness: int | None = None
    #: Rule key -> (priority, header, values, slot).
    rules: dict[str, tuple[int, str, list[str], str]] = field(default_factory=dict)
    #: Expected refresh preferences (a subset) on both groups.
    refresh: dict[str, Any] = field(default_factory=dict)


V1, V2 = "v1.0.0", "v2.0.0"
AB_RULES_BLUE_LIVE = {
    "header-a": (100, "X-Variant", ["a"], "blue"),
    "header-b": (101, "X-Variant", ["b"], "green"),
    "cookie-a": (102, "Cookie", ["*variant=a", "*variant=a;*"], "blue"),
    "cookie-b": (103, "Cookie", ["*variant=b", "*variant=b;*"], "green"),
}

CASES = {
    "steady": Case(
        release={"live": "blue", "blue": {"version": V1, "capacity": 10}, "green": {"capacity": 0}},
        weights={"blue": 100, "green": 0},
        test_slot="green",
        boots={"blue": V1, "green": V1},
        capacity={"blue": 10, "green": 0},
        refresh={"minHealthyPercentage": 80, "checkpointPercentages": [20, 40, 60, 80, 100]},
    ),
    "canary at 30": Case(
        release={
            "live": "blue",
            "blue": {"version": V1, "capacity": 10},
            "green": {"version": V2, "capacity": 10},
            "weights": {"blue": 70, "green": 30},
        },
        weights={"blue": 70, "green": 30},
        test_slot="green",
        boots={"blue": V1, "green": V2},
        capacity={"blue": 10, "green": 10},
    ),
    "canary with stickiness": Case(
        release={
            "live": "blue",
            "blue": {"version": V1, "capacity": 10},
            "green": {"version": V2, "capacity": 2},
            "weights": {"blue": 90, "green": 10},
            "stickiness": 300,
        },
        weights={"blue": 90, "green": 10},
        test_slot="green",
        boots={"blue": V1, "green": V2},
        capacity={"blue": 10, "green": 2},
        stickiness=300,
    ),
    "blue-green switched": Case(
        release={
            "live": "green",
            "blue": {"version": V1, "capacity": 10},
            "green": {"version": V2, "capacity": 10},
            "weights": {"blue": 0, "green": 100},
        },
        weights={"blue": 0, "green": 100},
        test_slot="blue",
        boots={"blue": V1, "green": V2},
        capacity={"blue": 10, "green": 10},
    ),
    "promoted, old slot scaled down": Case(
        release={
            "live": "green",
            "blue": {"version": V1, "capacity": 0},
            "green": {"version": V2, "capacity": 10},
            "weights": {"blue": 0, "green": 100},
        },
        weights={"blue": 0, "green": 100},
        test_slot="blue",
        boots={"blue": V1, "green": V2},
        capacity={"blue": 0, "green": 10},
    ),
    "idle slot without a version boots the live version": Case(
        release={
            "live": "green",
            "blue": {"capacity": 0},
            "green": {"version": V2, "capacity": 10},
            "weights": {"blue": 0, "green": 100},
        },
        weights={"blue": 0, "green": 100},
        test_slot="blue",
        boots={"blue": V2, "green": V2},
        capacity={"blue": 0, "green": 10},
    ),
    "a/b test": Case(
        release={
            "live": "blue",
            "blue": {"version": V1, "capacity": 10},
            "green": {"version": V2, "capacity": 10},
            "weights": {"blue": 50, "green": 50},
            "stickiness": 86400,
            "variants": {"header": "X-Variant", "cookie": "variant", "rulePriority": 100},
        },
        weights={"blue": 50, "green": 50},
        test_slot="green",
        boots={"blue": V1, "green": V2},
        capacity={"blue": 10, "green": 10},
        stickiness=86400,
        rules=AB_RULES_BLUE_LIVE,
    ),
    "a/b test with green live and custom names": Case(
        release={
            "live": "green",
            "blue": {"version": V2, "capacity": 4},
            "green": {"version": V1, "capacity": 10},
            "weights": {"blue": 20, "green": 80},
            "stickiness": 3600,
            "variants": {"header": "X-Exp", "cookie": "exp", "rulePriority": 7},
        },
        weights={"blue": 20, "green": 80},
        test_slot="blue",
        boots={"blue": V2, "green": V1},
        capacity={"blue": 4, "green": 10},
        stickiness=3600,
        rules={
            "header-a": (7, "X-Exp", ["a"], "green"),
            "header-b": (8, "X-Exp", ["b"], "blue"),
            "cookie-a": (9, "Cookie", ["*exp=a", "*exp=a;*"], "green"),
            "cookie-b": (10, "Cookie", ["*exp=b", "*exp=b;*"], "blue"),
        },
    ),
    "rolling release in place with its own settings": Case(
        release={
            "live": "blue",
            "blue": {"version": V2, "capacity": 10},
            "green": {"capacity": 0},
            "rolling": {"batchSize": 3, "batchInterval": 20, "instanceWarmup": 45},
        },
        weights={"blue": 100, "green": 0},
        test_slot="green",
        boots={"blue": V2, "green": V2},
        capacity={"blue": 10, "green": 0},
        refresh={
            "minHealthyPercentage": 70,
            "checkpointPercentages": [30, 60, 90, 100],
            "checkpointDelay": "20",
            "instanceWarmup": "45",
        },
    ),
}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def evaluated(request: pytest.FixtureRequest) -> tuple[Case, ServiceView]:
    case = CASES[request.param]
    run = run_stack_file(PRODUCTION, overrides={"release": {SERVICE: case.release}})
    return case, ServiceView(run, SERVICE)


def test_production_listener_weights(evaluated: tuple[Case, ServiceView]) -> None:
    case, svc = evaluated
    assert svc.forward_weights() == {svc.tg(slot).id: case.weights[slot] for slot in SLOTS}


def test_stickiness(evaluated: tuple[Case, ServiceView]) -> None:
    case, svc = evaluated
    (action,) = svc.listener.inputs["defaultActions"]
    expected = None if case.stickiness is None else {"enabled": True, "duration": case.stickiness}
    assert as_plain(action["forward"].get("stickiness")) == expected


def test_test_listener_forwards_to_the_idle_slot(evaluated: tuple[Case, ServiceView]) -> None:
    case, svc = evaluated
    (action,) = svc.test_listener.inputs["defaultActions"]
    assert action["targetGroupArn"] == svc.tg(case.test_slot).id


def test_variant_rules(evaluated: tuple[Case, ServiceView]) -> None:
    case, svc = evaluated
    rules = svc.rules()
    assert set(rules) == set(case.rules)
    for key, (priority, header, values, slot) in case.rules.items():
        rule = rules[key].inputs
        assert rule["listenerArn"] == svc.listener.id
        assert rule["priority"] == priority
        assert rule["actions"] == [{"type": "forward", "targetGroupArn": svc.tg(slot).id}]
        assert rule["conditions"] == [{"httpHeader": {"httpHeaderName": header, "values": values}}]


def test_slots_boot_and_run(evaluated: tuple[Case, ServiceView]) -> None:
    case, svc = evaluated
    for slot in SLOTS:
        assert svc.lt(slot).inputs["imageId"] == AMI[case.boots[slot]]
        asg = svc.asg(slot).inputs
        assert asg["desiredCapacity"] == asg["minSize"] == asg["maxSize"] == case.capacity[slot]


def test_refresh_preferences(evaluated: tuple[Case, ServiceView]) -> None:
    case, svc = evaluated
    for slot in SLOTS:
        prefs = as_plain(svc.asg(slot).inputs["instanceRefresh"]["preferences"])
        assert {key: prefs[key] for key in case.refresh} == case.refresh
