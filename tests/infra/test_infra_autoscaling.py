"""A service with ``autoscaling``: the live slot's group scales itself between releases (its
bounds, a target-tracking CPU policy, the desired capacity left to the policy) and is pinned again
while a release runs; without the key the program is what it was."""

from __future__ import annotations

from typing import Any

import pytest
from infra_helpers import PRODUCTION, ServiceView

from rfs_deploy.config import load_stack_file
from rfs_deploy.sim.mockrun import run_stack_file

SERVICE = "api-service"
T_POLICY = "aws:autoscaling/policy:Policy"
V1, V2 = "v1.0.0", "v2.0.0"
SCALING = {"min": 6, "max": 20, "targetCpu": 55}

AT_REST = {"live": "blue", "blue": {"version": V1, "capacity": 10}, "weights": {"blue": 100, "green": 0}}
CANARY = {
    "live": "blue",
    "blue": {"version": V1, "capacity": 10},
    "green": {"version": V2, "capacity": 3},
    "weights": {"blue": 70, "green": 30},
}
# blue-green after the switch, before the old slot scales down: still a release
SWITCHED = {
    "live": "green",
    "blue": {"version": V1, "capacity": 10},
    "green": {"version": V2, "capacity": 10},
    "weights": {"blue": 0, "green": 100},
}
PROMOTED = {
    "live": "green",
    "blue": {"version": V1},
    "green": {"version": V2, "capacity": 10},
    "weights": {"blue": 0, "green": 100},
}
ROLLING = {**AT_REST, "blue": {"version": V2, "capacity": 10}, "rolling": {"type": "rolling", "batchSize": 2}}


def service_with(scaling: dict[str, Any] | None) -> dict[str, Any]:
    config = load_stack_file(PRODUCTION).services[SERVICE].model_dump(by_alias=True, exclude_none=True)
    if scaling is not None:
        config["autoscaling"] = scaling
    return config


def view(release: dict[str, Any], scaling: dict[str, Any] | None = SCALING) -> ServiceView:
    overrides = {"services": {SERVICE: service_with(scaling)}, "release": {SERVICE: release}}
    return ServiceView(run_stack_file(PRODUCTION, overrides=overrides), SERVICE)


def bounds(found: ServiceView, slot: str) -> tuple[float, float, float]:
    inputs = found.asg(slot).inputs  # type: ignore[arg-type]
    return inputs["minSize"], inputs["maxSize"], inputs["desiredCapacity"]


def test_at_rest_the_live_group_scales_itself_with_a_cpu_target() -> None:
    found = view(AT_REST)
    assert bounds(found, "blue") == (6, 20, 10)
    # the policy owns the size from now on: the provider keeps the last desired capacity
    assert found.asg("blue").ignore_changes == ("desiredCapacity",)
    assert bounds(found, "green") == (0, 0, 0) and found.asg("green").ignore_changes == ()
    policies = {p.name: p for p in found.run.of_type(T_POLICY)}
    assert set(policies) == {f"{SERVICE}-scaling-blue", f"{SERVICE}-scaling-green"}
    policy = policies[f"{SERVICE}-scaling-blue"].inputs
    assert policy["policyType"] == "TargetTrackingScaling"
    tracking = policy["targetTrackingConfiguration"]
    assert tracking["targetValue"] == 55
    assert tracking["predefinedMetricSpecification"] == {"predefinedMetricType": "ASGAverageCPUUtilization"}
    assert policy["autoscalingGroupName"] == found.asg("blue").outputs["name"]
    assert (
        policies[f"{SERVICE}-scaling-green"].inputs["autoscalingGroupName"]
        == found.asg("green").outputs["name"]
    )


@pytest.mark.parametrize("release", [CANARY, SWITCHED, ROLLING], ids=["canary", "switched", "rolling"])
def test_while_a_release_runs_both_groups_are_pinned_to_their_capacity(release: dict[str, Any]) -> None:
    found = view(release)
    for slot in ("blue", "green"):
        capacity = release.get(slot, {}).get("capacity", 0)
        assert bounds(found, slot) == (capacity, capacity, capacity), slot
        assert found.asg(slot).ignore_changes == ()
    # the policies stay (nothing to create again after the release); pinned, they cannot act
    assert len(found.run.of_type(T_POLICY)) == 2


def test_after_a_promotion_the_new_live_slot_scales_itself() -> None:
    found = view(PROMOTED)
    assert bounds(found, "green") == (6, 20, 10)
    assert bounds(found, "blue") == (0, 0, 0)


def test_a_recorded_capacity_outside_the_bounds_starts_within_them() -> None:
    found = view({**AT_REST, "blue": {"version": V1, "capacity": 3}})
    assert bounds(found, "blue") == (6, 20, 6)


def test_without_autoscaling_the_groups_are_pinned_and_there_is_no_policy() -> None:
    found = view(AT_REST, scaling=None)
    assert bounds(found, "blue") == (10, 10, 10) and found.asg("blue").ignore_changes == ()
    assert found.run.of_type(T_POLICY) == []
    # the same resources, under the same names, as a stack without the key had before
    names = sorted(r.name for r in found.run.resources)
    assert names == sorted(r.name for r in view(AT_REST).run.resources if r.type != T_POLICY)


def test_the_refresh_settings_are_kept_on_an_autoscaled_group() -> None:
    found = view(AT_REST)
    assert found.asg("blue").inputs["instanceRefresh"]["strategy"] == "Rolling"


@pytest.mark.parametrize(
    ("scaling", "extra", "key", "reason"),
    [
        ({"min": 5, "max": 3}, {}, "services.api-service.autoscaling", "min 5 is above max 3"),
        (
            {"min": 12, "max": 20},
            {},
            "services.api-service",
            "instanceCount 10 is outside autoscaling's min 12",
        ),
        (
            {"min": 2, "max": 20, "targetCpu": 0},
            {},
            "services.api-service.autoscaling.targetCpu",
            "greater than 0",
        ),
        ({"max": 20}, {}, "services.api-service.autoscaling.min", ""),
        (
            {"min": 2, "max": 20},
            {"canaryMinCapacity": 0},
            "services.api-service.strategy.canaryMinCapacity",
            "greater than or equal to 1",
        ),
    ],
    ids=["min above max", "count outside", "zero cpu", "no min", "zero canary minimum"],
)
def test_bad_sizing_settings_are_one_line_naming_the_key(
    scaling: dict[str, Any], extra: dict[str, Any], key: str, reason: str
) -> None:
    from rfs_deploy.config.loading import load_stack_config, read_namespace
    from rfs_deploy.errors import ConfigError

    namespace = read_namespace(PRODUCTION)
    service = {**service_with(scaling), "strategy": {"type": "canary", **extra}}
    with pytest.raises(ConfigError) as caught:
        load_stack_config({**namespace, "services": {SERVICE: service}})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"config rfs-deploy:{key}: "), message
    assert reason in message
