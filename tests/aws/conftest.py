"""Fixtures for the AWS adapter tests: fake credentials, moto, an ELB world."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from rfs_deploy.aws import AwsSession

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Fake credentials and no way to reach real AWS or the user's own AWS config."""
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def session(moto: None) -> AwsSession:
    return AwsSession(REGION, max_attempts=2)


@dataclass
class ElbWorld:
    """A VPC with an ALB, two target groups (blue, green) and their ids, built in moto."""

    vpc_id: str
    subnet_ids: list[str]
    lb_arn: str
    blue_tg: str
    green_tg: str


@pytest.fixture
def elb_world(moto: None) -> ElbWorld:
    ec2 = boto3.client("ec2", region_name=REGION)
    elb = boto3.client("elbv2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"][
            "SubnetId"
        ]
        for i, az in ((1, "a"), (2, "b"))
    ]
    lb = elb.create_load_balancer(Name="api", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    tgs = [
        elb.create_target_group(Name=f"api-{slot}", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0][
            "TargetGroupArn"
        ]
        for slot in ("blue", "green")
    ]
    return ElbWorld(vpc, subnets, lb, tgs[0], tgs[1])
