"""`pulumi up` of examples/own-program (a program of its own: its VPC, subnets, one Service) through
the real Pulumi CLI, on moto via the provider double.

The example's stack file has no ``rfs-deploy:network`` (the network is the program's), so this
test does not go through the engine sandbox's stack backend (which reads the network from the
stack file); it runs the CLI itself, with the sandbox only for moto, the physics and the applier
service the provider double forwards to. The driver's ``plan`` runs on the example's stack too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_support import PROJECT, START

from rfs_deploy.outputs import OUTPUT_NAME, parse_service_outputs
from rfs_deploy.releases import OWNER_ENV, RELEASE_OUTPUT
from rfs_deploy.sim.engine import ApplierService, engine_bin, engine_environment
from rfs_deploy.sim.sandbox import Sandbox

EXAMPLE = PROJECT / "examples" / "own-program"


class OwnProgram:
    """The example copied to a work directory, with the CLI's environment."""

    def __init__(self, work: Path, env: dict[str, str], bin_dir: Path) -> None:
        self.work = work
        self.env = env
        self.bin_dir = bin_dir

    def pulumi(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        command = [str(self.bin_dir / "pulumi"), *args]
        env = {**self.env, "PULUMI_HOME": str(self.work / "pulumi-home"), **(extra_env or {})}
        done = subprocess.run(
            command, cwd=self.work, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    def up(self, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        """``pulumi up``; the update's change summary."""
        self.pulumi("up", "--yes", "--skip-preview", "--stack", "dev", extra_env=extra_env)
        history = json.loads(self.pulumi("stack", "history", "--json", "--stack", "dev"))
        summary: dict[str, Any] = history[0].get("resourceChanges") or {}
        return summary

    def set_release(self, service: str, state: dict[str, Any]) -> None:
        """Write ``rfs-deploy:release.<service>`` into the stack file, as the driver's config write."""
        path = self.work / "Pulumi.dev.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["config"]["rfs-deploy:release"][service] = state
        path.write_text(yaml.safe_dump(doc))

    def outputs(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.pulumi("stack", "output", "--json", "--stack", "dev"))
        return found


def network_stack_file(directory: Path) -> Path:
    """A stack file for the sandbox itself (moto, physics): the example's region and services,
    with a network of its own that the example's program never reads."""
    doc = yaml.safe_load((EXAMPLE / "Pulumi.dev.yaml").read_text())
    doc["config"]["rfs-deploy:network"] = {
        "vpcId": "vpc-0000000000000000a",
        "subnetIds": ["subnet-0000000000000000a", "subnet-0000000000000000b"],
    }
    path = directory / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def own_program(tmp_path: Path) -> Iterator[tuple[OwnProgram, Sandbox]]:
    bin_dir = engine_bin(PROJECT)
    assert bin_dir is not None
    (tmp_path / "box").mkdir()
    box = Sandbox.open(network_stack_file(tmp_path / "box"), session_dir=tmp_path / "session", start=START)
    service = ApplierService(box.applier).start()
    try:
        work = tmp_path / "work"
        work.mkdir()
        for name in ("Pulumi.yaml", "__main__.py", "Pulumi.dev.yaml"):
            shutil.copyfile(EXAMPLE / name, work / name)
        (work / "venv").symlink_to(sys.prefix, target_is_directory=True)
        (work / "state").mkdir()
        env = engine_environment(bin_dir.resolve(), work, service.url, box.aws.region)
        program = OwnProgram(work, env, bin_dir.resolve())
        program.pulumi("stack", "init", "dev")
        yield program, box
    finally:
        service.stop()
        box.close()


def test_pulumi_up_of_the_own_program_example_creates_its_network_and_the_service(
    own_program: tuple[OwnProgram, Sandbox],
) -> None:
    program, box = own_program
    first = program.up()
    assert first.get("create", 0) > 0

    outputs = program.outputs()
    web = parse_service_outputs(outputs[OUTPUT_NAME]["web"])
    ec2, elbv2 = box.aws.raw("ec2"), box.aws.raw("elbv2")
    autoscaling = box.aws.raw("autoscaling")
    (vpc,) = ec2.describe_vpcs(VpcIds=[outputs["vpcId"]])["Vpcs"]
    assert vpc["CidrBlock"] == "10.20.0.0/16"
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    assert sorted(s["CidrBlock"] for s in subnets) == ["10.20.0.0/24", "10.20.1.0/24"]
    subnet_ids = {s["SubnetId"] for s in subnets}

    # the service's load balancer, target groups and fleets are on the program's own network
    (lb,) = elbv2.describe_load_balancers(LoadBalancerArns=[web.load_balancer_arn])["LoadBalancers"]
    assert lb["VpcId"] == vpc["VpcId"]
    assert {zone["SubnetId"] for zone in lb["AvailabilityZones"]} == subnet_ids
    for slot in ("blue", "green"):
        (tg,) = elbv2.describe_target_groups(TargetGroupArns=[web.slot(slot).target_group_arn])[
            "TargetGroups"
        ]
        assert tg["VpcId"] == vpc["VpcId"]
    groups = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[web.slot("blue").asg_name, web.slot("green").asg_name]
    )["AutoScalingGroups"]
    by_name = {g["AutoScalingGroupName"]: g for g in groups}
    blue, green = by_name[web.slot("blue").asg_name], by_name[web.slot("green").asg_name]
    assert set(blue["VPCZoneIdentifier"].split(",")) == subnet_ids
    assert (blue["DesiredCapacity"], green["DesiredCapacity"]) == (2, 0)
    (listener,) = elbv2.describe_listeners(ListenerArns=[web.listener_arn])["Listeners"]
    weights = {
        t["TargetGroupArn"]: t["Weight"]
        for t in listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    }
    assert weights == {web.slot("blue").target_group_arn: 100, web.slot("green").target_group_arn: 0}
    assert outputs[RELEASE_OUTPUT]["web"]["weights"] == {"blue": 100, "green": 0}

    # nothing changes on a second update
    second = program.up()
    assert set(second) == {"same"}


def test_a_canary_step_of_the_own_program_moves_the_weights_on_its_listener(
    own_program: tuple[OwnProgram, Sandbox],
) -> None:
    program, box = own_program
    program.up()
    step = {
        "live": "blue",
        "blue": {"version": "v1.0.0", "capacity": 2},
        "green": {"version": "v1.1.0", "capacity": 2},
        "weights": {"blue": 80, "green": 20},
    }
    program.set_release("web", step)
    # without the driver's owner mark the live release state is kept (a stale checkout reverts nothing)
    kept = program.up()
    assert set(kept) == {"same"}
    # as the driver runs it: the update owns the service's release
    program.up(extra_env={OWNER_ENV: "web"})
    web = parse_service_outputs(program.outputs()[OUTPUT_NAME]["web"])
    (listener,) = box.aws.raw("elbv2").describe_listeners(ListenerArns=[web.listener_arn])["Listeners"]
    weights = {
        t["TargetGroupArn"]: t["Weight"]
        for t in listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    }
    assert weights == {web.slot("blue").target_group_arn: 80, web.slot("green").target_group_arn: 20}
    (green,) = box.aws.raw("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[web.slot("green").asg_name]
    )["AutoScalingGroups"]
    assert green["DesiredCapacity"] == 2


def test_the_driver_plans_a_release_of_the_own_program(own_program: tuple[OwnProgram, Sandbox]) -> None:
    """``rfs-deploy --project <dir> plan`` on the example's stack, through the real engine."""
    program, _ = own_program
    program.up()
    # the stack file has no rfs-deploy:network: the driver does not need one
    assert (
        "rfs-deploy:network" not in yaml.safe_load((program.work / "Pulumi.dev.yaml").read_text())["config"]
    )
    command = [
        sys.executable, "-m", "rfs_deploy", "--backend", "pulumi", "--project", str(program.work),
        "plan", "--stack", "dev", "--service", "web", "--version", "v1.1.0", "--json",
    ]  # fmt: skip
    env = {**program.env, "PULUMI_HOME": str(program.work / "pulumi-home")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert (plan["service"], plan["version"]) == ("web", "v1.1.0")
    # the live release state the program applied, read back from the stack
    assert plan["from"]["live"] == "blue" and plan["from"]["blue"]["version"] == "v1.0.0"
    assert plan["from"]["weights"] == {"blue": 100, "green": 0}
    weights = [step["description"] for step in plan["steps"] if step["kind"] == "set-weight"]
    assert weights[:2] == ["set weight 20%", "set weight 50%"]
    assert plan["steps"][0]["kind"] == "deploy-idle" and "v1.1.0" in plan["steps"][0]["description"]
