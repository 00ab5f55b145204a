"""The shared-alb stack through the real engine: `pulumi up` of three services behind one ALB on moto
(via the provider double), then a canary of one service while the other two keep their traffic,
checked on the listener rules in moto."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from engine_support import PROJECT, engine_sandbox

from rfs_deploy.config.model import SLOTS
from rfs_deploy.drive import events
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.outputs import OUTPUT_NAME, ServiceOutputs, parse_outputs

STACK = PROJECT / "stacks" / "Pulumi.shared-alb.yaml"
SERVICES = ("api", "web", "search")


def rule_weights(elbv2: Any, out: ServiceOutputs) -> dict[str, int]:
    """The slot weights of the service's rule as moto holds it."""
    rules = elbv2.describe_rules(ListenerArn=out.listener_arn)["Rules"]
    (rule,) = [r for r in rules if r["RuleArn"] == out.rule_arn]
    (action,) = rule["Actions"]
    names = {out.slot(slot).target_group_arn: slot for slot in SLOTS}
    groups = action["ForwardConfig"]["TargetGroups"]
    return {names[g["TargetGroupArn"]]: int(g["Weight"]) for g in groups if int(g["Weight"]) > 0}


def test_three_services_behind_one_alb_and_a_canary_of_one_of_them(tmp_path: Path) -> None:
    with engine_sandbox(STACK, tmp_path / "work", scenario="healthy") as sandbox:
        first = sandbox.provision()
        assert first is not None and first.changes.get("create", 0) > 0
        elbv2 = sandbox.box.aws.raw("elbv2")
        assert len(elbv2.describe_load_balancers()["LoadBalancers"]) == 1
        assert set(sandbox.backend.outputs()[OUTPUT_NAME]) == set(SERVICES)

        def outs() -> dict[str, ServiceOutputs]:
            return {name: parse_outputs(sandbox.backend.outputs(), name) for name in SERVICES}

        before = outs()
        (listener,) = {out.listener_arn for out in before.values()}
        rules = elbv2.describe_rules(ListenerArn=listener)["Rules"]
        assert sorted(r["Priority"] for r in rules if not r["IsDefault"]) == ["109", "209", "59"]
        seen: list[dict[str, dict[str, int]]] = []
        seams = sandbox.seams()

        def watch(event: Any) -> None:
            if isinstance(event, events.StepFinished):
                seen.append({name: rule_weights(elbv2, out) for name, out in outs().items()})

        seams.listeners.append(watch)
        record = asyncio.run(Driver(seams).deploy("api", "v1.1.0", "canary"))

        assert record.status is DeploymentStatus.COMPLETED, record.errors
        api = [step["api"] for step in seen]
        assert {"blue": 90, "green": 10} in api and {"blue": 50, "green": 50} in api
        assert api[-1] == {"green": 100}
        assert all(step["web"] == step["search"] == {"blue": 100} for step in seen)
        after = outs()
        # the same rules, updated in place: no service's rule was replaced or renumbered
        assert {name: out.rule_arn for name, out in after.items()} == {
            name: out.rule_arn for name, out in before.items()
        }
        release = sandbox.backend.read_config().release["api"]
        assert release.slot(release.live).version == "v1.1.0"
