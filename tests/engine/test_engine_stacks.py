"""`pulumi up` of every stacks/ file through the real engine, on moto via the provider double."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_support import STACKS, cli_history, engine_sandbox

from rfs_deploy.outputs import OUTPUT_NAME, parse_service_outputs


@pytest.mark.parametrize("stack_file", STACKS, ids=[p.stem.removeprefix("Pulumi.") for p in STACKS])
def test_every_stack_file_comes_up_and_a_second_up_changes_nothing(stack_file: Path, tmp_path: Path) -> None:
    with engine_sandbox(stack_file, tmp_path / "work") as sandbox:
        first = sandbox.provision()
        assert first is not None and first.version == 1
        assert first.changes.get("create", 0) > 0

        services = sandbox.backend.outputs()[OUTPUT_NAME]
        assert services, "the program exports its services"
        elbv2 = sandbox.box.aws.raw("elbv2")
        autoscaling = sandbox.box.aws.raw("autoscaling")
        for raw in services.values():
            out = parse_service_outputs(raw)
            # what the engine recorded is what exists in moto
            assert elbv2.describe_load_balancers(LoadBalancerArns=[out.load_balancer_arn])["LoadBalancers"]
            groups = autoscaling.describe_auto_scaling_groups(
                AutoScalingGroupNames=[out.slot("blue").asg_name, out.slot("green").asg_name]
            )["AutoScalingGroups"]
            assert len(groups) == 2

        second = sandbox.backend.up("no change")
        assert second.version == 2
        assert set(second.changes) == {"same"}
        assert [e["result"] for e in cli_history(sandbox)] == ["succeeded", "succeeded"]
        # the file backend reports version 0 for every entry; the engine sandbox numbers them
        assert [e["version"] for e in cli_history(sandbox)] == [0, 0]
        assert [e.version for e in sandbox.backend.history()] == [2, 1]
