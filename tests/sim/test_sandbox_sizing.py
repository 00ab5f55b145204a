"""A canary in the sandbox sizes its idle slot for its weight: the Auto Scaling group in moto
starts small, grows before the weight that needs more instances, is full before 100 %, and a
rollback scales it back to what it had before the deployment."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from rfs_deploy.drive import events
from rfs_deploy.outputs import parse_outputs

REPO = Path(__file__).resolve().parents[2]
SERVICE = "api-service"


def stack(steps: list[Any]) -> dict[str, Any]:
    return {
        "config": {
            "aws:region": "us-east-1",
            "rfs-deploy:network": {
                "vpcId": "vpc-0a1b2c3d4e5f60718",
                "subnetIds": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"],
            },
            "rfs-deploy:services": {
                SERVICE: {
                    "artifact": {
                        "amis": {"v1.0.0": "ami-0aa1100000000a100", "v2.0.0": "ami-0aa1100000000a200"}
                    },
                    "instanceCount": 4,
                    "healthCheckGracePeriod": 60,
                    "strategy": {"type": "canary", "canaryInterval": 60, "steps": steps},
                }
            },
            "rfs-deploy:release": {
                SERVICE: {
                    "live": "blue",
                    "blue": {"version": "v1.0.0", "capacity": 4},
                    "green": {"capacity": 0},
                    "weights": {"blue": 100, "green": 0},
                }
            },
        }
    }


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "project"
    (directory / "stacks").mkdir(parents=True)
    shutil.copyfile(REPO / "Pulumi.yaml", directory / "Pulumi.yaml")
    monkeypatch.setenv("RFS_DEPLOY_PROJECT", str(directory))
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(tmp_path / "state"))
    return directory


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
