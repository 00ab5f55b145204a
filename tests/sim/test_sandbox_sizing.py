"""A canary in the sandbox sizes its idle slot for its weight: the Auto Scaling group in moto
starts small, grows before the weight that needs more instances, is full before 100 %, and a
rollback scales it back to what it had before the deployment."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from sim_stacks import stack_with

from rfs_deploy.config.model import SlotName
from rfs_deploy.drive import events
from rfs_deploy.outputs import parse_outputs

SERVICE = "api-service"


def stack(steps: list[Any]) -> dict[str, Any]:
    return stack_with(
        {
            "artifact": {"amis": {"v1.0.0": "ami-0aa1100000000a100", "v2.0.0": "ami-0aa1100000000a200"}},
            "instanceCount": 4,
            "healthCheckGracePeriod": 60,
            "strategy": {"type": "canary", "canaryInterval": 60, "steps": steps},
        }
    )


class GroupWatch:
    """After every plan step: the idle (green) group's size in moto and the weight it then has."""

    def __init__(self) -> None:
        self.seams: Any = None
        self.seen: list[tuple[str, int, int, int]] = []

    def __call__(self, event: Any) -> None:
        if not isinstance(event, events.StepFinished) or self.seams is None:
            return
        group = self.group()
        release = self.seams.backend.read_config().release[SERVICE]
        in_service = sum(i["LifecycleState"] == "InService" for i in group["Instances"])
        self.seen.append((event.kind, group["DesiredCapacity"], in_service, release.weights["green"]))

    def group(self) -> dict[str, Any]:
        return group_of(self.seams, "green")


def group_of(seams: Any, slot: SlotName) -> dict[str, Any]:
    """The slot's Auto Scaling group as moto describes it."""
    name = parse_outputs(seams.backend.outputs(), SERVICE).slot(slot).asg_name
    asg = seams.backend.applier.aws.raw("autoscaling")
    (group,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return group


def open_with(
    project: Path, name: str, steps: list[Any], autoscaling: dict[str, int] | None = None
) -> tuple[Any, GroupWatch]:
    from rfs_deploy.connect import open_seams

    config = stack(steps)
    if autoscaling is not None:
        config["config"]["rfs-deploy:services"][SERVICE]["autoscaling"] = autoscaling
    (project / "stacks" / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(config))
    watch = GroupWatch()
    seams = open_seams(name, backend="sim", scenario="healthy", fresh=True, listeners=[watch])
    watch.seams = seams
    return seams, watch


def test_a_sandbox_canary_starts_small_and_grows_the_group_before_each_weight(project: Path) -> None:
    from rfs_deploy.drive.driver import Driver

    seams, watch = open_with(project, "sizing", [10, 30, 60])
    try:
        record = asyncio.run(Driver(seams).deploy(SERVICE, "v2.0.0", "canary"))
    finally:
        seams.close()
    assert record.status.value == "COMPLETED", record.errors
    sizes = {(kind, weight): (desired, serving) for kind, desired, serving, weight in watch.seen}
    # one instance for 10 % of four; for 30 % room for 60 % (three); all four before 100 %
    assert sizes[("deploy-idle", 0)][0] == 1
    assert sizes[("set-weight", 10)] == (1, 1)
    assert sizes[("set-weight", 30)] == (3, 3)
    assert sizes[("set-weight", 60)] == (3, 3)
    assert sizes[("set-weight", 100)] == (4, 4)
    grown = [
        (desired, serving, weight) for kind, desired, serving, weight in watch.seen if kind == "scale-idle"
    ]
    # each scale step ends with every new instance in service, before its weight moves
    assert grown == [(3, 3, 10), (4, 4, 60)]
    # promoted, the old slot (now idle: blue) was scaled to zero; the new one is live at full size
    assert record.steps[-1].kind == "scale-down"


def test_a_rollback_scales_the_grown_idle_slot_back(project: Path) -> None:
    from rfs_deploy.drive.driver import Driver

    steps = [{"setWeight": 10}, {"analyze": "1m"}, {"setWeight": 30}, {"pause": {}}]
    seams, watch = open_with(project, "sizing-rollback", steps)
    try:
        paused = asyncio.run(Driver(seams).deploy(SERVICE, "v2.0.0", "canary"))
        assert paused.paused is not None, paused.errors
        assert watch.group()["DesiredCapacity"] == 3  # grown for 30 % (room for 60 %)
        aborted = asyncio.run(Driver(seams).abort(SERVICE))
        group = watch.group()
        release = seams.backend.read_config().release[SERVICE]
    finally:
        seams.close()
    assert aborted.status.value == "ROLLED_BACK", aborted.errors
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 0, 0)
    assert release.slot("green").capacity == 0 and release.weights == {"blue": 100, "green": 0}


def open_scaled(project: Path, name: str, steps: list[Any]) -> tuple[Any, GroupWatch]:
    """A sandbox stack whose service autoscales (2 to 8 instances, four on record)."""
    return open_with(project, name, steps, autoscaling={"min": 2, "max": 8, "targetCpu": 60})


def bounds(seams: Any, slot: SlotName) -> tuple[int, int, int]:
    """The slot's group in moto: minimum, maximum and desired capacity."""
    found = group_of(seams, slot)
    return found["MinSize"], found["MaxSize"], found["DesiredCapacity"]


def live_sizes(seams: Any) -> list[int]:
    """The old live (blue) group's desired capacity after every plan step, as a listener sees it."""
    seen: list[int] = []

    def watch(event: Any) -> None:
        if isinstance(event, events.StepFinished):
            seen.append(bounds(seams, "blue")[2])

    seams.listeners.append(watch)
    return seen


def test_an_autoscaled_service_in_the_sandbox_keeps_the_policys_size_and_is_pinned_in_a_release(
    project: Path,
) -> None:
    from rfs_deploy.drive.driver import Driver

    seams, watch = open_scaled(project, "scaled", [10, 30, 60])
    try:
        asg = seams.backend.applier.aws.raw("autoscaling")
        out = parse_outputs(seams.backend.outputs(), SERVICE)
        blue, green = out.slot("blue").asg_name, out.slot("green").asg_name
        assert bounds(seams, "blue") == (2, 8, 4) and bounds(seams, "green") == (0, 0, 0)
        policies = {p["AutoScalingGroupName"]: p for p in asg.describe_policies()["ScalingPolicies"]}
        assert set(policies) == {blue, green}
        tracking = policies[blue]["TargetTrackingConfiguration"]
        assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ASGAverageCPUUtilization"
        assert tracking["TargetValue"] == 60

        # the policy scales out; a stack update of the same release leaves its size alone
        asg.set_desired_capacity(AutoScalingGroupName=blue, DesiredCapacity=6)
        seams.backend.up("an update between releases")
        assert bounds(seams, "blue") == (2, 8, 6)

        live = live_sizes(seams)
        record = asyncio.run(Driver(seams).deploy(SERVICE, "v2.0.0", "canary"))
        assert record.status.value == "COMPLETED", record.errors
        # the new version was released at the six instances the policy had scaled to: the
        # canary sized for six, and the new live slot scales itself again from there
        assert bounds(seams, "green") == (2, 8, 6) and bounds(seams, "blue") == (0, 0, 0)
    finally:
        seams.close()
    # the old live slot was pinned at its six instances, never shrunk to the four on record,
    # until the scale-down after the promotion
    assert live[:-1] == [6] * (len(live) - 1) and live[-1] == 0
    pinned = [desired for kind, desired, _, weight in watch.seen if kind == "set-weight" and weight < 100]
    assert pinned == [1, 4, 4]  # 10 % of six: one; for 30 %, room for 60 %: four


def test_a_promoted_release_of_an_autoscaled_service_keeps_the_size_it_started_from(project: Path) -> None:
    """A deployment held at a gate and promoted (by a new driver, as from another machine)
    rebuilds its plan for the fleet size the deployment started from, which the journal keeps."""
    from rfs_deploy.drive.driver import Driver

    seams, watch = open_scaled(project, "scaled-gate", [{"setWeight": 10}, {"pause": {}}, {"setWeight": 60}])
    try:
        asg = seams.backend.applier.aws.raw("autoscaling")
        blue = parse_outputs(seams.backend.outputs(), SERVICE).slot("blue").asg_name
        asg.set_desired_capacity(AutoScalingGroupName=blue, DesiredCapacity=7)
        live = live_sizes(seams)
        paused = asyncio.run(Driver(seams).deploy(SERVICE, "v2.0.0", "canary"))
        assert paused.paused is not None, paused.errors
        assert bounds(seams, "blue") == (7, 7, 7)  # pinned at its size for the release
        promoted = asyncio.run(Driver(seams).promote(SERVICE))
        assert promoted.status.value == "COMPLETED", promoted.errors
        assert bounds(seams, "green") == (2, 8, 7) and bounds(seams, "blue") == (0, 0, 0)
    finally:
        seams.close()
    assert live[:-1] == [7] * (len(live) - 1) and live[-1] == 0
    grown = [desired for kind, desired, _, _ in watch.seen if kind == "scale-idle"]
    assert grown == [7]  # 60 % of seven needs five; twice 60 % is all seven


def test_plan_says_a_release_is_made_for_the_autoscaled_fleets_size(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rfs_deploy.cli import main

    seams, _ = open_scaled(project, "scaled-plan", [10, 50])
    try:
        blue = parse_outputs(seams.backend.outputs(), SERVICE).slot("blue").asg_name
        seams.backend.applier.aws.raw("autoscaling").set_desired_capacity(
            AutoScalingGroupName=blue, DesiredCapacity=5
        )
        seams.backend.up("an update between releases")  # saves the session with the policy's size
    finally:
        seams.close()
    code = main(
        ["plan", "--backend", "sim", "--stack", "scaled-plan", "--service", SERVICE, "--version", "v2.0.0"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "the live fleet runs 5 instances (its scaling policy's size; 4 on record)" in out
    assert "deploy v2.0.0 to the idle slot (1 instance)" in out
    assert "scale the idle slot to 5 instances for 50%" in out


def test_reading_the_fleets_size_is_in_the_driver_policy_of_an_autoscaled_stack(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one call the adoption adds (DescribeAutoScalingGroups, on the live group) is made
    through the driver's Auto Scaling client, and `iam-policy --stack` grants it exactly when a
    service autoscales."""
    import json

    from rfs_deploy import iam
    from rfs_deploy.cli import main
    from rfs_deploy.drive.driver import Driver

    seams, _ = open_scaled(project, "scaled-iam", [50])
    called: list[tuple[str, Any]] = []

    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        called.append((iam.action_name(model.service_model.service_name, model.name), params))

    seams.fleet._client.meta.events.register("before-parameter-build", hook)
    try:
        live = parse_outputs(seams.backend.outputs(), SERVICE).slot("blue").asg_name
        record = asyncio.run(Driver(seams).deploy(SERVICE, "v2.0.0", "canary"))
    finally:
        seams.close()
    assert record.status.value == "COMPLETED", record.errors
    reads = [p for action, p in called if action == "autoscaling:DescribeAutoScalingGroups"]
    assert reads == [{"AutoScalingGroupNames": [live]}]

    assert main(["iam-policy", "--stack", "scaled-iam"]) == 0
    scaled = json.loads(capsys.readouterr().out)
    assert "autoscaling:DescribeAutoScalingGroups" in iam.policy_actions(scaled)
    (project / "stacks" / "Pulumi.pinned.yaml").write_text(yaml.safe_dump(stack([50])))
    assert main(["iam-policy", "--stack", "pinned"]) == 0
    pinned = json.loads(capsys.readouterr().out)
    assert "autoscaling:DescribeAutoScalingGroups" not in iam.policy_actions(pinned)
