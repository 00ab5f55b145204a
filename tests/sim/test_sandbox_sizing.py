"""A canary in the sandbox sizes its idle slot for its weight: the Auto Scaling group in moto
starts small, grows before the weight that needs more instances, is full before 100 %, and a
rollback scales it back to what it had before the deployment."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from sim_stacks import stack_with

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
        name = parse_outputs(self.seams.backend.outputs(), SERVICE).slot("green").asg_name
        asg = self.seams.backend.applier.aws.raw("autoscaling")
        (group,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return group


def open_with(project: Path, name: str, steps: list[Any]) -> tuple[Any, GroupWatch]:
    from rfs_deploy.connect import open_seams

    (project / "stacks" / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(stack(steps)))
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


def test_an_autoscaled_service_in_the_sandbox_keeps_the_policys_size_and_is_pinned_in_a_release(
    project: Path,
) -> None:
    from rfs_deploy.connect import open_seams
    from rfs_deploy.drive.driver import Driver

    config = stack([10, 30, 60])
    service = config["config"]["rfs-deploy:services"][SERVICE]
    service["autoscaling"] = {"min": 2, "max": 8, "targetCpu": 60}
    (project / "stacks" / "Pulumi.scaled.yaml").write_text(yaml.safe_dump(config))
    watch = GroupWatch()
    seams = open_seams("scaled", backend="sim", scenario="healthy", fresh=True, listeners=[watch])
    watch.seams = seams
    try:
        asg = seams.backend.applier.aws.raw("autoscaling")
        out = parse_outputs(seams.backend.outputs(), SERVICE)
        blue, green = out.slot("blue").asg_name, out.slot("green").asg_name

        def group(name: str) -> tuple[int, int, int]:
            (found,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
            return found["MinSize"], found["MaxSize"], found["DesiredCapacity"]

        assert group(blue) == (2, 8, 4) and group(green) == (0, 0, 0)
        policies = {p["AutoScalingGroupName"]: p for p in asg.describe_policies()["ScalingPolicies"]}
        assert set(policies) == {blue, green}
        tracking = policies[blue]["TargetTrackingConfiguration"]
        assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ASGAverageCPUUtilization"
        assert tracking["TargetValue"] == 60

        # the policy scales out; a stack update of the same release leaves its size alone
        asg.set_desired_capacity(AutoScalingGroupName=blue, DesiredCapacity=6)
        seams.backend.up("an update between releases")
        assert group(blue) == (2, 8, 6)

        record = asyncio.run(Driver(seams).deploy(SERVICE, "v2.0.0", "canary"))
        assert record.status.value == "COMPLETED", record.errors
        # the release pinned the old live slot to its recorded capacity, then scaled it down;
        # the new live slot scales itself again
        assert group(green) == (2, 8, 4) and group(blue) == (0, 0, 0)
    finally:
        seams.close()
    pinned = [desired for kind, desired, _, weight in watch.seen if kind == "set-weight" and weight < 100]
    assert pinned == [1, 3, 3]
