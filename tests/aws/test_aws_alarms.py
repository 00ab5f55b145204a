"""CloudWatchAlarms against moto and Stubber: alarm states, batches of 100 names, paging."""

from __future__ import annotations

import json
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


# --------------------------------------------------------------------------- alarm details

#: StateReasonData as CloudWatch writes it for a metric alarm's state change.
REASON_DATA = {
    "version": "1.0",
    "queryDate": "2024-10-26T19:00:38.853+0000",
    "startDate": "2024-10-26T18:58:00.000+0000",
    "statistic": "p99",
    "period": 60,
    "recentDatapoints": [2.5, 3.1],
    "threshold": 2.0,
    "evaluatedDatapoints": [
        {"timestamp": "2024-10-26T18:59:00.000+0000", "sampleCount": 300.0, "value": 3.1},
        {"timestamp": "2024-10-26T18:58:00.000+0000", "sampleCount": 280.0, "value": 2.5},
    ],
}


def test_firing_details_read_threshold_and_datapoints_from_moto(session: AwsSession) -> None:
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    cw.put_metric_alarm(
        AlarmName="api-green-p99",
        Namespace="AWS/ApplicationELB",
        MetricName="TargetResponseTime",
        ExtendedStatistic="p99",
        Period=60,
        EvaluationPeriods=2,
        Threshold=2.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    _alarm(cw, "api-green-5xx")
    cw.set_alarm_state(
        AlarmName="api-green-p99",
        StateValue="ALARM",
        StateReason="Threshold Crossed: 2 out of the last 2 datapoints were greater than the threshold "
        "(2.0).",
        StateReasonData=json.dumps(REASON_DATA),
    )
    alarms = CloudWatchAlarms.from_session(session)

    details = alarms.firing_details(["api-green-5xx", "api-green-p99", "no-such-alarm"])

    assert [d.name for d in details] == ["api-green-p99"]
    alarm = details[0]
    assert (alarm.metric, alarm.metric_names) == ("TargetResponseTime", ("TargetResponseTime",))
    assert (alarm.threshold, alarm.comparison, alarm.period, alarm.statistic) == (
        2.0,
        "GreaterThanThreshold",
        60,
        "p99",
    )
    # oldest first, times as epoch seconds of the periods' starts
    assert [p.value for p in alarm.datapoints] == [2.5, 3.1]
    assert alarm.datapoints[1].at == 1729969140.0  # 2024-10-26T18:59:00Z
    assert [p.value for p in alarm.breaching] == [2.5, 3.1]
    assert alarm.reason.startswith("Threshold Crossed: 2 out of the last 2")


def test_firing_details_of_a_metric_math_alarm_from_a_stubbed_answer() -> None:
    client = AwsSession("us-east-1").client("cloudwatch")
    math_alarm = {
        "AlarmName": "api-green-5xx-rate",
        "StateValue": "ALARM",
        "StateReason": "Threshold Crossed: 1 datapoint [0.12 (26/10/24 18:59:00)] was greater than the "
        "threshold (0.05).",
        "StateReasonData": json.dumps(
            {
                "version": "1.0",
                "period": 60,
                "recentDatapoints": [0.12],
                "threshold": 0.05,
                "evaluatedDatapoints": [{"timestamp": "2024-10-26T18:59:00.000+0000", "value": 0.12}],
            }
        ),
        "Threshold": 0.05,
        "ComparisonOperator": "GreaterThanThreshold",
        "EvaluationPeriods": 1,
        "Metrics": [
            {
                "Id": "errors",
                "MetricStat": {
                    "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "HTTPCode_Target_5XX_Count"},
                    "Period": 60,
                    "Stat": "Sum",
                },
                "ReturnData": False,
            },
            {
                "Id": "requests",
                "MetricStat": {
                    "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount"},
                    "Period": 60,
                    "Stat": "Sum",
                },
                "ReturnData": False,
            },
            {"Id": "error_rate", "Expression": "FILL(errors, 0) / requests", "ReturnData": True},
        ],
    }
    # a value-only document and one that is not JSON: the alarm still reports its state
    values_only = {
        "AlarmName": "api-green-cpu",
        "StateValue": "ALARM",
        "StateReasonData": json.dumps({"version": "1.0", "threshold": 90.0, "recentDatapoints": [95.5]}),
        "MetricName": "CPUUtilization",
        "Threshold": 90.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    }
    unreadable = {"AlarmName": "api-green-p99", "StateValue": "ALARM", "StateReasonData": "not json"}
    ok = {"AlarmName": "api-blue-5xx-rate", "StateValue": "OK"}
    names = ["api-green-5xx-rate", "api-green-cpu", "api-green-p99", "api-blue-5xx-rate"]
    stub = Stubber(client)
    stub.add_response(
        "describe_alarms",
        {"MetricAlarms": [math_alarm, values_only, unreadable, ok]},
        {"AlarmNames": names, "AlarmTypes": ["MetricAlarm", "CompositeAlarm"]},
    )
    with stub:
        details = CloudWatchAlarms(client).firing_details(names)
    stub.assert_no_pending_responses()

    rate, cpu, p99 = details
    assert rate.metric == "FILL(errors, 0) / requests"
    assert rate.metric_names == ("HTTPCode_Target_5XX_Count", "RequestCount")
    assert rate.threshold == 0.05 and rate.period == 60
    assert [(p.at, p.value) for p in rate.breaching] == [(1729969140.0, 0.12)]
    assert cpu.comparison == "GreaterThanOrEqualToThreshold"
    assert [(p.at, p.value) for p in cpu.datapoints] == [(None, 95.5)]
    assert [p.value for p in cpu.breaching] == [95.5]
    assert (p99.datapoints, p99.threshold, p99.metric_names) == ((), None, ())
    assert p99.breaching == ()
