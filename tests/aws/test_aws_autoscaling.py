"""AutoScalingFleet: InService counts against moto; instance refresh with Stubber (moto lacks it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from rfs_deploy.aws import AutoScalingFleet, AwsSession
from rfs_deploy.drive.protocols import RefreshStatus
from rfs_deploy.errors import AwsError

ASG = "api-blue"
REFRESH_ID = "08b91cf7-8fa6-48af-b6a6-d227f40f1b9b"
PREFERENCES = {
    "MinHealthyPercentage": 90,
    "InstanceWarmup": 60,
    "CheckpointPercentages": [20, 40, 60, 80, 100],
    "CheckpointDelay": 30,
    "AutoRollback": True,
    "AlarmSpecification": {"Alarms": ["api-blue-5xx", "api-blue-p99"]},
}


# --------------------------------------------------------------------------- moto: capacity


def _group(subnet_id: str, capacity: int) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName="api-blue", LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"}
    )
    boto3.client("autoscaling", region_name="us-east-1").create_auto_scaling_group(
        AutoScalingGroupName=ASG,
        LaunchTemplate={"LaunchTemplateName": "api-blue", "Version": "$Latest"},
        MinSize=0,
        MaxSize=10,
        DesiredCapacity=capacity,
        VPCZoneIdentifier=subnet_id,
    )


@pytest.fixture
def subnet_id(moto: None) -> str:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    return str(ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"])


def test_in_service_counts_only_in_service_instances(subnet_id: str, session: AwsSession) -> None:
    _group(subnet_id, capacity=3)
    fleet = AutoScalingFleet.from_session(session)
    assert fleet.in_service(ASG) == 3

    autoscaling = boto3.client("autoscaling", region_name="us-east-1")
    instances = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[ASG])["AutoScalingGroups"][0][
        "Instances"
    ]
    autoscaling.enter_standby(
        AutoScalingGroupName=ASG,
        InstanceIds=[instances[0]["InstanceId"]],
        ShouldDecrementDesiredCapacity=True,
    )
    assert fleet.in_service(ASG) == 2


def test_in_service_of_an_unknown_group_is_an_aws_error(session: AwsSession) -> None:
    with pytest.raises(AwsError, match="no group named 'nope'"):
        AutoScalingFleet.from_session(session).in_service("nope")


# --------------------------------------------------------------------------- Stubber: instance refresh


@pytest.fixture
def stubbed() -> tuple[AutoScalingFleet, Stubber]:
    client = AwsSession("us-east-1").client("autoscaling")
    return AutoScalingFleet(client), Stubber(client)


def _refresh(refresh_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "InstanceRefreshId": refresh_id,
        "AutoScalingGroupName": ASG,
        "Status": status,
        "StartTime": datetime(2026, 1, 5, 12, 0, tzinfo=UTC),
        **extra,
    }


def test_start_refresh_sends_rolling_with_the_preferences(stubbed: tuple[AutoScalingFleet, Stubber]) -> None:
    fleet, stub = stubbed
    stub.add_response(
        "start_instance_refresh",
        {"InstanceRefreshId": REFRESH_ID},
        {"AutoScalingGroupName": ASG, "Strategy": "Rolling", "Preferences": PREFERENCES},
    )
    with stub:
        assert fleet.start_refresh(ASG, PREFERENCES) == REFRESH_ID
    stub.assert_no_pending_responses()


def test_start_while_another_refresh_runs_is_an_aws_error(stubbed: tuple[AutoScalingFleet, Stubber]) -> None:
    fleet, stub = stubbed
    stub.add_client_error(
        "start_instance_refresh",
        service_error_code="InstanceRefreshInProgress",
        service_message="An Instance Refresh is already in progress.",
    )
    with (
        stub,
        pytest.raises(AwsError, match="StartInstanceRefresh api-blue failed: InstanceRefreshInProgress"),
    ):
        fleet.start_refresh(ASG, {})


def test_latest_refresh_is_the_newest_one(stubbed: tuple[AutoScalingFleet, Stubber]) -> None:
    fleet, stub = stubbed
    stub.add_response(
        "describe_instance_refreshes",
        {
            "InstanceRefreshes": [
                _refresh(
                    REFRESH_ID,
                    "RollbackInProgress",
                    PercentageComplete=40,
                    InstancesToUpdate=6,
                    StatusReason="Alarm api-blue-5xx went into ALARM",
                )
            ],
            "NextToken": "older",
        },
        {"AutoScalingGroupName": ASG, "MaxRecords": 1},
    )
    with stub:
        status = fleet.latest_refresh(ASG)
    assert status == RefreshStatus(
        REFRESH_ID, "RollbackInProgress", 40, 6, "Alarm api-blue-5xx went into ALARM"
    )
    assert status.rolled_back_by_aws
    assert not status.done


def test_a_pending_refresh_without_progress_reads_as_zero(stubbed: tuple[AutoScalingFleet, Stubber]) -> None:
    fleet, stub = stubbed
    stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [_refresh(REFRESH_ID, "Pending")]})
    with stub:
        assert fleet.latest_refresh(ASG) == RefreshStatus(REFRESH_ID, "Pending", 0, 0, "")


def test_a_group_that_never_refreshed_has_no_latest(stubbed: tuple[AutoScalingFleet, Stubber]) -> None:
    fleet, stub = stubbed
    stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": []})
    with stub:
        assert fleet.latest_refresh(ASG) is None


def test_cancel_and_rollback_name_the_group(stubbed: tuple[AutoScalingFleet, Stubber]) -> None:
    fleet, stub = stubbed
    stub.add_response(
        "cancel_instance_refresh", {"InstanceRefreshId": REFRESH_ID}, {"AutoScalingGroupName": ASG}
    )
    stub.add_response(
        "rollback_instance_refresh", {"InstanceRefreshId": REFRESH_ID}, {"AutoScalingGroupName": ASG}
    )
    with stub:
        fleet.cancel_refresh(ASG)
        fleet.rollback_refresh(ASG)
    stub.assert_no_pending_responses()


def test_cancel_without_an_active_refresh_does_nothing(stubbed: tuple[AutoScalingFleet, Stubber]) -> None:
    fleet, stub = stubbed
    stub.add_client_error("cancel_instance_refresh", service_error_code="ActiveInstanceRefreshNotFound")
    with stub:
        fleet.cancel_refresh(ASG)
    stub.assert_no_pending_responses()


def test_cancel_failing_otherwise_is_an_aws_error(stubbed: tuple[AutoScalingFleet, Stubber]) -> None:
    fleet, stub = stubbed
    stub.add_client_error("cancel_instance_refresh", service_error_code="ResourceContention")
    with stub, pytest.raises(AwsError, match="ResourceContention") as info:
        fleet.cancel_refresh(ASG)
    assert isinstance(info.value.__cause__, ClientError)


@pytest.mark.parametrize("code", ["ActiveInstanceRefreshNotFound", "IrreversibleInstanceRefresh"])
def test_rollback_that_aws_refuses_is_an_aws_error(
    stubbed: tuple[AutoScalingFleet, Stubber], code: str
) -> None:
    fleet, stub = stubbed
    stub.add_client_error("rollback_instance_refresh", service_error_code=code)
    with stub, pytest.raises(AwsError, match=f"RollbackInstanceRefresh api-blue failed: {code}"):
        fleet.rollback_refresh(ASG)
