"""AutoScalingFleet: the latest instance refresh and cancelling it, with Stubber (moto lacks them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from rfs_deploy.aws import AutoScalingFleet, AwsSession
from rfs_deploy.drive.protocols import RefreshStatus
from rfs_deploy.errors import AwsError

ASG = "api-blue"
REFRESH_ID = "08b91cf7-8fa6-48af-b6a6-d227f40f1b9b"


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


def test_cancel_names_the_group(stubbed: tuple[AutoScalingFleet, Stubber]) -> None:
    fleet, stub = stubbed
    stub.add_response(
        "cancel_instance_refresh", {"InstanceRefreshId": REFRESH_ID}, {"AutoScalingGroupName": ASG}
    )
    with stub:
        fleet.cancel_refresh(ASG)
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
