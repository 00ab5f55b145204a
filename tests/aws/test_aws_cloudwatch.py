"""CloudWatchMetrics / CloudWatchAlarms / service_queries against moto, Stubber and a local endpoint.

moto serves Sum / Average GetMetricData and alarm states; it crashes on ``p99`` and never pages,
so p99, NextToken paging and PartialData use botocore's Stubber with the real API shapes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import Stubber

from rfs_deploy.aws import AwsSession, CloudWatchAlarms, CloudWatchMetrics, service_queries
from rfs_deploy.drive.protocols import MetricQuery, MetricSeries
from rfs_deploy.outputs import ServiceOutputs, SlotOutputs

if TYPE_CHECKING:
    from conftest import FakeCloudWatch

LB = "app/api/50dc6c495c0c9188"
OUTPUTS = ServiceOutputs(
    load_balancer_arn=f"arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/{LB}",
    load_balancer_dimension=LB,
    dns_name="api-1234.us-east-1.elb.amazonaws.com",
    listener_arn="arn:listener/prod",
    test_listener_arn="arn:listener/test",
    listener_port=80,
    test_listener_port=8080,
    slots={
        slot: SlotOutputs(
            target_group_arn=f"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-{slot}/{n}",
            target_group_dimension=f"targetgroup/api-{slot}/{n}",
            asg_name=f"api-{slot}",
            alarm_names=(f"api-{slot}-5xx", f"api-{slot}-p99"),
        )
        for slot, n in (("blue", "73e2d6bc24d8a067"), ("green", "1e2d6bc24d8a0673"))
    },
)
T0 = 1_700_000_040.0  # a whole minute


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


# --------------------------------------------------------------------------- service_queries


def test_service_queries_cover_every_slot_in_play_with_stable_ids() -> None:
    queries = service_queries(OUTPUTS, ["blue", "green", "blue"], period=60)

    assert [q.id for q in queries] == [
        "req_blue", "err_blue", "p99_blue", "cpu_blue",
        "req_green", "err_green", "p99_green", "cpu_green",
    ]  # fmt: skip
    by_id = {q.id: q for q in queries}
    alb = (("TargetGroup", "targetgroup/api-green/1e2d6bc24d8a0673"), ("LoadBalancer", LB))
    assert by_id["req_green"] == MetricQuery(
        "req_green", "AWS/ApplicationELB", "RequestCount", alb, "Sum", 60
    )
    assert by_id["err_green"].metric_name == "HTTPCode_Target_5XX_Count"
    assert by_id["err_green"].stat == "Sum"
    assert (by_id["p99_green"].metric_name, by_id["p99_green"].stat) == ("TargetResponseTime", "p99")
    assert by_id["cpu_blue"] == MetricQuery(
        "cpu_blue", "AWS/EC2", "CPUUtilization", (("AutoScalingGroupName", "api-blue"),), "Average", 60
    )


@pytest.mark.parametrize("bad", ["Req_blue", "1req", "req-blue", ""])
def test_invalid_query_ids_are_refused_before_any_request(bad: str) -> None:
    metrics = CloudWatchMetrics(client=None)
    with pytest.raises(ValueError, match="must start lowercase"):
        metrics.get_metric_data([MetricQuery(bad, "X", "m", (), "Sum")], T0, T0 + 60)


def test_duplicate_query_ids_are_refused() -> None:
    query = MetricQuery("req_blue", "X", "m", (), "Sum")
    with pytest.raises(ValueError, match="twice"):
        CloudWatchMetrics(client=None).get_metric_data([query, query], T0, T0 + 60)


# --------------------------------------------------------------------------- moto: Sum / Average


ERRORS = "HTTPCode_Target_5XX_Count"


def test_sum_and_average_from_moto_in_one_request(session: AwsSession) -> None:
    now = float(int(time.time()) // 60 * 60)
    start = now - 300
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    blue = OUTPUTS.slot("blue")
    alb = [
        {"Name": "TargetGroup", "Value": blue.target_group_dimension},
        {"Name": "LoadBalancer", "Value": LB},
    ]
    asg = [{"Name": "AutoScalingGroupName", "Value": blue.asg_name}]
    for minute, requests, errors, cpu in ((-240, 100, 2, 30.0), (-180, 120, 0, 50.0), (-120, 80, 4, 70.0)):
        ts = _dt(now + minute + 5)
        cw.put_metric_data(
            Namespace="AWS/ApplicationELB",
            MetricData=[
                {"MetricName": "RequestCount", "Dimensions": alb, "Timestamp": ts, "Value": requests / 2},
                {"MetricName": "RequestCount", "Dimensions": alb, "Timestamp": ts, "Value": requests / 2},
                {"MetricName": ERRORS, "Dimensions": alb, "Timestamp": ts, "Value": errors},
            ],
        )
        cw.put_metric_data(
            Namespace="AWS/EC2",
            MetricData=[
                {"MetricName": "CPUUtilization", "Dimensions": asg, "Timestamp": ts, "Value": cpu - 10},
                {"MetricName": "CPUUtilization", "Dimensions": asg, "Timestamp": ts, "Value": cpu + 10},
            ],
        )
    queries = [q for q in service_queries(OUTPUTS, ["blue"]) if q.stat != "p99"]  # moto lacks p99
    metrics = CloudWatchMetrics.from_session(session)

    series = metrics.get_metric_data(queries, start, now)

    assert series["req_blue"].values == (100.0, 120.0, 80.0)
    assert series["err_blue"].values == (2.0, 0.0, 4.0)
    assert series["cpu_blue"].values == (30.0, 50.0, 70.0)
    assert series["req_blue"].timestamps == (now - 240, now - 180, now - 120)
    assert all(s.complete for s in series.values())
    assert (metrics.calls, metrics.requests, metrics.metrics_requested) == (1, 1, 3)


def test_no_data_is_an_empty_complete_series(session: AwsSession) -> None:
    now = time.time()
    series = CloudWatchMetrics.from_session(session).get_metric_data(
        [q for q in service_queries(OUTPUTS, ["green"]) if q.id == "req_green"], now - 300, now
    )
    assert series == {"req_green": MetricSeries("req_green", (), (), complete=True)}


# --------------------------------------------------------------------------- Stubber: p99, paging


def _stubbed() -> tuple[CloudWatchMetrics, Stubber]:
    client = AwsSession("us-east-1").client("cloudwatch")
    return CloudWatchMetrics(client), Stubber(client)


def _request(queries: list[MetricQuery], token: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "MetricDataQueries": [
            {
                "Id": q.id,
                "MetricStat": {
                    "Metric": {
                        "Namespace": q.namespace,
                        "MetricName": q.metric_name,
                        "Dimensions": [{"Name": n, "Value": v} for n, v in q.dimensions],
                    },
                    "Period": q.period,
                    "Stat": q.stat,
                },
                "ReturnData": True,
            }
            for q in queries
        ],
        "StartTime": _dt(T0),
        "EndTime": _dt(T0 + 180),
    }
    if token:
        request["NextToken"] = token
    return request


def _result(qid: str, points: list[tuple[float, float]], status: str = "Complete") -> dict[str, Any]:
    return {
        "Id": qid,
        "Label": qid,
        "Timestamps": [_dt(ts) for ts, _ in points],
        "Values": [v for _, v in points],
        "StatusCode": status,
    }


def test_p99_is_requested_as_a_metric_stat_and_read_back() -> None:
    metrics, stub = _stubbed()
    p99 = [q for q in service_queries(OUTPUTS, ["blue"]) if q.stat == "p99"]
    # CloudWatch scans newest first by default: the adapter turns it round.
    stub.add_response(
        "get_metric_data",
        {"MetricDataResults": [_result("p99_blue", [(T0 + 120, 0.9), (T0 + 60, 0.4), (T0, 0.35)])]},
        _request(p99),
    )
    with stub:
        series = metrics.get_metric_data(p99, T0, T0 + 180)
    stub.assert_no_pending_responses()
    assert series["p99_blue"] == MetricSeries("p99_blue", (T0, T0 + 60, T0 + 120), (0.35, 0.4, 0.9))


def test_next_token_pages_are_merged_oldest_first() -> None:
    metrics, stub = _stubbed()
    queries = service_queries(OUTPUTS, ["blue"])[:2]
    stub.add_response(
        "get_metric_data",
        {
            "MetricDataResults": [
                _result("req_blue", [(T0 + 120, 30.0), (T0 + 60, 20.0)], "PartialData"),
                _result("err_blue", [(T0 + 120, 3.0)], "PartialData"),
            ],
            "NextToken": "page-2",
        },
        _request(queries),
    )
    stub.add_response(
        "get_metric_data",
        {"MetricDataResults": [_result("req_blue", [(T0, 10.0)]), _result("err_blue", [(T0, 1.0)])]},
        _request(queries, token="page-2"),
    )
    with stub:
        series = metrics.get_metric_data(queries, T0, T0 + 180)
    stub.assert_no_pending_responses()
    assert series["req_blue"] == MetricSeries("req_blue", (T0, T0 + 60, T0 + 120), (10.0, 20.0, 30.0))
    assert series["err_blue"] == MetricSeries("err_blue", (T0, T0 + 120), (1.0, 3.0))
    assert (metrics.calls, metrics.requests, metrics.metrics_requested) == (1, 2, 4)


@pytest.mark.parametrize("status", ["PartialData", "InternalError"])
def test_data_still_partial_after_paging_is_marked_incomplete(status: str) -> None:
    metrics, stub = _stubbed()
    queries = service_queries(OUTPUTS, ["green"])[:2]
    stub.add_response(
        "get_metric_data",
        {"MetricDataResults": [_result("req_green", [(T0, 5.0)], status), _result("err_green", [])]},
        _request(queries),
    )
    with stub:
        series = metrics.get_metric_data(queries, T0, T0 + 180)
    assert series["req_green"] == MetricSeries("req_green", (T0,), (5.0,), complete=False)
    assert series["err_green"].complete


def test_a_query_cloudwatch_never_answered_is_incomplete() -> None:
    metrics, stub = _stubbed()
    queries = service_queries(OUTPUTS, ["green"])[:2]
    stub.add_response(
        "get_metric_data", {"MetricDataResults": [_result("req_green", [(T0, 5.0)])]}, _request(queries)
    )
    with stub:
        series = metrics.get_metric_data(queries, T0, T0 + 180)
    assert series["err_green"] == MetricSeries("err_green", (), (), complete=False)


def test_more_than_500_queries_go_in_500_query_requests(fake_cloudwatch: FakeCloudWatch) -> None:
    queries = [MetricQuery(f"q{i}", "X", "m", (), "Sum") for i in range(501)]
    first = {"Id": "q0", "Timestamps": [T0], "Values": [1.0], "StatusCode": "Complete"}
    fake_cloudwatch.replies = [
        (200, {"MetricDataResults": [first]}),
        (200, {"MetricDataResults": [{"Id": "q500", "StatusCode": "Complete"}]}),
    ]
    metrics = CloudWatchMetrics.from_session(AwsSession("us-east-1", endpoint_url=fake_cloudwatch.url))

    series = metrics.get_metric_data(queries, T0, T0 + 60)

    assert [len(body["MetricDataQueries"]) for _, body in fake_cloudwatch.received] == [500, 1]
    assert series["q0"].values == (1.0,)
    assert series["q500"] == MetricSeries("q500", (), ())
    assert (metrics.calls, metrics.requests, metrics.metrics_requested) == (1, 2, 501)


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
