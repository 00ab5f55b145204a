"""Helpers for the program tests: stack files, type tokens, and a view of one service's resources.

The program runs under Pulumi's mock runtime through :mod:`rfs_deploy.sim.mockrun`; nothing
reaches AWS. :class:`ServiceView` finds a service's resources in a run by their logical names.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rfs_deploy.config.model import SlotName
from rfs_deploy.sim.mockrun import ProgramRun, RegisteredResource

REPO = Path(__file__).resolve().parents[2]
STACK_FILES = sorted((REPO / "stacks").glob("Pulumi.*.yaml"))
PRODUCTION = REPO / "stacks" / "Pulumi.production.yaml"

T_SG = "aws:ec2/securityGroup:SecurityGroup"
T_LB = "aws:lb/loadBalancer:LoadBalancer"
T_TG = "aws:lb/targetGroup:TargetGroup"
T_LISTENER = "aws:lb/listener:Listener"
T_RULE = "aws:lb/listenerRule:ListenerRule"
T_LT = "aws:ec2/launchTemplate:LaunchTemplate"
T_ASG = "aws:autoscaling/group:Group"
T_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


@dataclass(frozen=True)
class ServiceView:
    """One service's resources in a :class:`ProgramRun`, by role."""

    run: ProgramRun
    name: str

    def get(self, suffix: str, type_: str) -> RegisteredResource:
        return self.run.named(f"{self.name}-{suffix}", type_)

    @property
    def component(self) -> RegisteredResource:
        return self.run.named(self.name, "rfs-deploy:aws:Service")

    @property
    def load_balancer(self) -> RegisteredResource:
        return self.get("alb", T_LB)

    @property
    def alb_sg(self) -> RegisteredResource:
        return self.get("alb-sg", T_SG)

    @property
    def instance_sg(self) -> RegisteredResource:
        return self.get("instance-sg", T_SG)

    @property
    def listener(self) -> RegisteredResource:
        return self.get("listener", T_LISTENER)

    @property
    def test_listener(self) -> RegisteredResource:
        return self.get("test-listener", T_LISTENER)

    def tg(self, slot: SlotName) -> RegisteredResource:
        return self.get(f"tg-{slot}", T_TG)

    def lt(self, slot: SlotName) -> RegisteredResource:
        return self.get(f"lt-{slot}", T_LT)

    def asg(self, slot: SlotName) -> RegisteredResource:
        return self.get(f"asg-{slot}", T_ASG)

    def alarm(self, kind: str, slot: SlotName) -> RegisteredResource:
        return self.get(f"{kind}-{slot}", T_ALARM)

    def rules(self) -> dict[str, RegisteredResource]:
        prefix = f"{self.name}-rule-"
        return {r.name.removeprefix(prefix): r for r in self.run.of_type(T_RULE) if r.name.startswith(prefix)}

    def forward_weights(self) -> dict[str, float]:
        """Production listener weights keyed by target group ARN."""
        (action,) = self.listener.inputs["defaultActions"]
        return {tg["arn"]: tg["weight"] for tg in action["forward"]["targetGroups"]}


def user_data_text(launch_template: RegisteredResource) -> str | None:
    data = launch_template.inputs.get("userData")
    return None if data is None else base64.b64decode(data).decode()


def as_plain(value: Any) -> Any:
    """Whole-number floats (how the mock runtime delivers numbers) as ints, for readable asserts."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: as_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_plain(v) for v in value]
    return value
