"""botocore's standard retry mode, seen from a real HTTP endpoint on 127.0.0.1.

botocore's Stubber answers in the ``before-call`` event, before the retry handler ever runs, so a
stubbed ThrottlingException is raised at once and never retried. To show the retries the adapters
rely on, these tests point the client at a local CloudWatch that answers throttling, then success.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from rfs_deploy.aws import AwsSession, CloudWatchMetrics
from rfs_deploy.drive.protocols import MetricQuery
from rfs_deploy.errors import AwsError

if TYPE_CHECKING:
    from conftest import FakeCloudWatch

THROTTLED = (400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
QUERY = MetricQuery("req_blue", "AWS/ApplicationELB", "RequestCount", (("TargetGroup", "tg"),), "Sum")
OK = (
    200,
    {
        "MetricDataResults": [
            {
                "Id": "req_blue",
                "Label": "RequestCount",
                "Timestamps": [1_700_000_060.0, 1_700_000_000.0],
                "Values": [12.0, 10.0],
                "StatusCode": "Complete",
            }
        ]
    },
)


def _metrics(fake: FakeCloudWatch, max_attempts: int) -> CloudWatchMetrics:
    return CloudWatchMetrics.from_session(
        AwsSession("us-east-1", max_attempts=max_attempts, endpoint_url=fake.url)
    )


def test_throttling_is_retried_by_botocore_then_succeeds(fake_cloudwatch: FakeCloudWatch) -> None:
    fake_cloudwatch.replies = [THROTTLED, OK]
    metrics = _metrics(fake_cloudwatch, max_attempts=3)

    series = metrics.get_metric_data([QUERY], 1_699_999_940.0, 1_700_000_120.0)

    assert [target for target, _ in fake_cloudwatch.received] == [
        "GraniteServiceVersion20100801.GetMetricData"
    ] * 2
    assert series["req_blue"].timestamps == (1_700_000_000.0, 1_700_000_060.0)
    assert series["req_blue"].values == (10.0, 12.0)
    # One logical request: botocore's retry is invisible to the adapter's cost counters.
    assert (metrics.calls, metrics.requests, metrics.metrics_requested) == (1, 1, 1)


def test_throttling_past_max_attempts_is_an_aws_error(fake_cloudwatch: FakeCloudWatch) -> None:
    fake_cloudwatch.replies = [THROTTLED, THROTTLED, OK]
    metrics = _metrics(fake_cloudwatch, max_attempts=2)

    with pytest.raises(AwsError, match="GetMetricData failed: ThrottlingException: Rate exceeded") as info:
        metrics.get_metric_data([QUERY], 1_699_999_940.0, 1_700_000_120.0)

    assert len(fake_cloudwatch.received) == 2  # max_attempts counts the first attempt
    cause = info.value.__cause__
    assert isinstance(cause, ClientError)
    assert cause.response["ResponseMetadata"]["RetryAttempts"] == 1


def test_the_request_carries_the_queries_and_window(fake_cloudwatch: FakeCloudWatch) -> None:
    fake_cloudwatch.replies = [OK]
    _metrics(fake_cloudwatch, max_attempts=1).get_metric_data([QUERY], 1_699_999_940.0, 1_700_000_120.0)

    ((_, body),) = fake_cloudwatch.received
    assert body["StartTime"] == 1_699_999_940
    assert body["EndTime"] == 1_700_000_120
    assert body["MetricDataQueries"] == [
        {
            "Id": "req_blue",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/ApplicationELB",
                    "MetricName": "RequestCount",
                    "Dimensions": [{"Name": "TargetGroup", "Value": "tg"}],
                },
                "Period": 60,
                "Stat": "Sum",
            },
            "ReturnData": True,
        }
    ]
