"""AutoScalingFleet.resume_refresh: a held refresh started again with its batch preferences, with
Stubber (which checks the request against the Auto Scaling API's model)."""

from __future__ import annotations

from datetime import UTC, datetime

from botocore.stub import Stubber

from rfs_deploy.aws import AutoScalingFleet, AwsSession

ASG = "api-blue"
HELD = "08b91cf7-8fa6-48af-b6a6-d227f40f1b9b"
STARTED = "5c4fd9a1-1f0a-4f43-9d0c-6a0f7b8f0a11"
#: The held refresh's batch preferences, which the new one keeps.
BATCHES = {
    "MinHealthyPercentage": 80,
    "MaxHealthyPercentage": 100,
    "InstanceWarmup": 60,
    "CheckpointPercentages": [20, 40, 60, 80, 100],
    "CheckpointDelay": 30,
    "SkipMatching": True,
}


def test_a_held_refresh_starts_again_with_its_batches_and_without_the_alarm_guard() -> None:
    client = AwsSession("us-east-1").client("autoscaling")
    fleet, stub = AutoScalingFleet(client), Stubber(client)
    held = {
        "InstanceRefreshId": HELD,
        "AutoScalingGroupName": ASG,
        "Status": "Cancelled",
        "StartTime": datetime(2026, 1, 5, 12, 0, tzinfo=UTC),
        "PercentageComplete": 20,
        "Preferences": {**BATCHES, "AutoRollback": True, "AlarmSpecification": {"Alarms": ["api-blue-5xx"]}},
    }
    stub.add_response(
        "describe_instance_refreshes",
        {"InstanceRefreshes": [held]},
        {"AutoScalingGroupName": ASG, "MaxRecords": 1},
    )
    stub.add_response(
        "start_instance_refresh",
        {"InstanceRefreshId": STARTED},
        {
            "AutoScalingGroupName": ASG,
            "Strategy": "Rolling",
            "Preferences": BATCHES,
        },
    )
    with stub:
        assert fleet.resume_refresh(ASG) == STARTED
    stub.assert_no_pending_responses()
