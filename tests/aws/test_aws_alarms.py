"""CloudWatchAlarms against moto and Stubber: alarm states, batches of 100 names, paging."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.stub import Stubber

from rfs_deploy.aws import AwsSession, CloudWatchAlarms

# --------------------------------------------------------------------------- alarms


def _alarm(cw: Any, name: str) -> None:
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/ApplicationELB",
        MetricName="HTTPCode_Target_5XX_Count",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5,
        ComparisonOperator="GreaterThanThreshold",
    )


def test_firing_reads_alarm_states_from_moto(session: AwsSession) -> None:
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    for name in ("api-blue-5xx", "api-blue-p99", "api-green-5xx"):
        _alarm(cw, name)
    cw.set_alarm_state(AlarmName="api-green-5xx", StateValue="ALARM", StateReason="5xx spike")
    cw.set_alarm_state(AlarmName="api-blue-5xx", StateValue="INSUFFICIENT_DATA", StateReason="no data")
    alarms = CloudWatchAlarms.from_session(session)

    names = ["api-green-5xx", "api-blue-5xx", "api-blue-p99", "no-such-alarm"]
    assert alarms.firing(names) == ["api-green-5xx"]
    assert alarms.states(names) == {
        "api-green-5xx": "ALARM",
        "api-blue-5xx": "INSUFFICIENT_DATA",
        "api-blue-p99": "OK",
    }
    cw.set_alarm_state(AlarmName="api-green-5xx", StateValue="OK", StateReason="recovered")
    assert alarms.firing(names) == []


def test_alarm_names_go_in_batches_of_100_and_pages_are_followed() -> None:
    client = AwsSession("us-east-1").client("cloudwatch")
    names = [f"alarm-{i:03d}" for i in range(150)]
    types = ["MetricAlarm", "CompositeAlarm"]

    def alarm(name: str, state: str) -> dict[str, Any]:
        return {"AlarmName": name, "StateValue": state}

    stub = Stubber(client)
    stub.add_response(
        "describe_alarms",
        {"MetricAlarms": [alarm("alarm-007", "ALARM")], "NextToken": "more"},
        {"AlarmNames": names[:100], "AlarmTypes": types},
    )
    stub.add_response(
        "describe_alarms",
        {"MetricAlarms": [alarm("alarm-099", "OK")], "CompositeAlarms": [alarm("alarm-042", "ALARM")]},
        {"AlarmNames": names[:100], "AlarmTypes": types, "NextToken": "more"},
    )
    stub.add_response(
        "describe_alarms",
        {"MetricAlarms": [alarm("alarm-149", "ALARM")]},
        {"AlarmNames": names[100:], "AlarmTypes": types},
    )
    with stub:
        firing = CloudWatchAlarms(client).firing(names)
    stub.assert_no_pending_responses()
    assert firing == ["alarm-007", "alarm-042", "alarm-149"]
