"""Elbv2Traffic against moto's ELBv2 (listeners, rules, target health), Stubber for rarer states."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import Stubber

from rfs_deploy.aws import AwsSession, Elbv2Traffic
from rfs_deploy.drive.protocols import RuleView, TargetHealth
from rfs_deploy.errors import AwsError

if TYPE_CHECKING:
    from conftest import ElbWorld


def _elb() -> Any:
    return boto3.client("elbv2", region_name="us-east-1")


def _weighted(world: ElbWorld, blue: int, green: int, stickiness: int | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "TargetGroups": [
            {"TargetGroupArn": world.blue_tg, "Weight": blue},
            {"TargetGroupArn": world.green_tg, "Weight": green},
        ]
    }
    if stickiness is not None:
        config["TargetGroupStickinessConfig"] = {"Enabled": True, "DurationSeconds": stickiness}
    return {"Type": "forward", "ForwardConfig": config}


def _listener(world: ElbWorld, port: int, action: dict[str, Any]) -> str:
    return str(
        _elb().create_listener(
            LoadBalancerArn=world.lb_arn, Protocol="HTTP", Port=port, DefaultActions=[action]
        )["Listeners"][0]["ListenerArn"]
    )


def test_weighted_forward_with_stickiness(elb_world: ElbWorld, session: AwsSession) -> None:
    listener = _listener(elb_world, 80, _weighted(elb_world, 90, 10, stickiness=3600))
    traffic = Elbv2Traffic.from_session(session)

    assert traffic.forward_weights(listener) == {elb_world.blue_tg: 90, elb_world.green_tg: 10}
    assert traffic.stickiness(listener) == 3600


def test_weights_follow_modify_listener(elb_world: ElbWorld, session: AwsSession) -> None:
    listener = _listener(elb_world, 80, _weighted(elb_world, 100, 0, stickiness=None))
    traffic = Elbv2Traffic.from_session(session)
    assert traffic.forward_weights(listener) == {elb_world.blue_tg: 100, elb_world.green_tg: 0}
    assert traffic.stickiness(listener) is None

    _elb().modify_listener(ListenerArn=listener, DefaultActions=[_weighted(elb_world, 0, 100, stickiness=60)])

    assert traffic.forward_weights(listener) == {elb_world.blue_tg: 0, elb_world.green_tg: 100}
    assert traffic.stickiness(listener) == 60


def test_a_plain_target_group_forward_reads_as_weight_100(elb_world: ElbWorld, session: AwsSession) -> None:
    listener = _listener(elb_world, 8080, {"Type": "forward", "TargetGroupArn": elb_world.green_tg})
    traffic = Elbv2Traffic.from_session(session)

    assert traffic.forward_weights(listener) == {elb_world.green_tg: 100}
    assert traffic.stickiness(listener) is None
    assert traffic.rules(listener) == []


def test_header_rules_by_ascending_priority(elb_world: ElbWorld, session: AwsSession) -> None:
    listener = _listener(elb_world, 80, _weighted(elb_world, 50, 50, stickiness=86400))
    elb = _elb()
    elb.create_rule(
        ListenerArn=listener,
        Priority=20,
        Conditions=[
            {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Variant", "Values": ["b"]}}
        ],
        Actions=[
            {"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": elb_world.green_tg}]}}
        ],
    )
    elb.create_rule(
        ListenerArn=listener,
        Priority=10,
        Conditions=[
            {
                "Field": "http-header",
                "HttpHeaderConfig": {"HttpHeaderName": "Cookie", "Values": ["*variant=a*", "*ab=a*"]},
            }
        ],
        Actions=[{"Type": "forward", "TargetGroupArn": elb_world.blue_tg}],
    )

    rules = Elbv2Traffic.from_session(session).rules(listener)

    assert rules == [
        RuleView(10, (("Cookie", ("*variant=a*", "*ab=a*")),), {elb_world.blue_tg: 100}),
        RuleView(20, (("X-Variant", ("b",)),), {elb_world.green_tg: 100}),
    ]


def test_unknown_listener_is_an_aws_error(elb_world: ElbWorld, session: AwsSession) -> None:
    missing = elb_world.lb_arn.replace(":loadbalancer/", ":listener/") + "/0123456789abcdef"
    with pytest.raises(AwsError, match="ELBv2 DescribeListeners failed: ListenerNotFound"):
        Elbv2Traffic.from_session(session).forward_weights(missing)


def test_target_health_counts_registered_instances(elb_world: ElbWorld, session: AwsSession) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instances = ec2.run_instances(
        ImageId=image, MinCount=3, MaxCount=3, InstanceType="t3.micro", SubnetId=elb_world.subnet_ids[0]
    )["Instances"]
    ids = [inst["InstanceId"] for inst in instances]
    _elb().register_targets(TargetGroupArn=elb_world.blue_tg, Targets=[{"Id": i, "Port": 80} for i in ids])
    traffic = Elbv2Traffic.from_session(session)

    assert traffic.target_health(elb_world.blue_tg) == TargetHealth(healthy=3)
    assert traffic.target_health(elb_world.green_tg) == TargetHealth()

    ec2.stop_instances(InstanceIds=ids[:1])
    assert traffic.target_health(elb_world.blue_tg) == TargetHealth(healthy=2, unused=1)


def test_every_target_state_is_counted() -> None:
    client = AwsSession("us-east-1").client("elbv2")
    states = [
        "healthy",
        "healthy",
        "initial",
        "unhealthy",
        "unavailable",
        "draining",
        "unhealthy.draining",
        "unused",
    ]
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-blue/73e2d6bc24d8a067"
    with Stubber(client) as stub:
        stub.add_response(
            "describe_target_health",
            {
                "TargetHealthDescriptions": [
                    {"Target": {"Id": f"i-{n:017x}", "Port": 80}, "TargetHealth": {"State": state}}
                    for n, state in enumerate(states)
                ]
            },
            {"TargetGroupArn": arn},
        )
        health = Elbv2Traffic(client).target_health(arn)
    assert health == TargetHealth(healthy=2, unhealthy=2, initial=1, draining=2, unused=1)
