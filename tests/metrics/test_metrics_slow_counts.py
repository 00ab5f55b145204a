"""The slow-request count: ``TC(t:)`` of TargetResponseTime beside each slot's four metrics.

A whole tick against a local endpoint that answers like CloudWatch (the JSON protocol), as the
provider's other tick tests: the query is in the same single request, its statistic carries the
threshold, and the counts are summed per slot with the threshold they count against.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest
from metrics_outputs import OUTPUTS

from rfs_deploy.aws import AwsSession
from rfs_deploy.metrics import SlotMetrics, aggregate, slot_sources
from rfs_deploy.metrics.cloudwatch import QUERIES_PER_SLOT, CloudWatchProvider, slot_queries
from rfs_deploy.metrics.definitions import SLOW, slower_than

if TYPE_CHECKING:
    from conftest import FakeCloudWatch

T0 = 1_700_000_040.0


def _reply(points: dict[str, list[tuple[float, float]]]) -> tuple[int, dict[str, Any]]:
    results = [
        {
            "Id": qid,
            "Label": qid,
            "Timestamps": [ts for ts, _ in sorted(found, reverse=True)],
            "Values": [v for _, v in sorted(found, reverse=True)],
            "StatusCode": "Complete",
        }
        for qid, found in points.items()
    ]
    return 200, {"MetricDataResults": results}


@pytest.mark.parametrize(
    ("threshold", "stat"), [(0.42, "TC(0.42:)"), (2.0, "TC(2:)"), (0.0000004, "TC(0.000001:)")]
)
def test_the_statistic_is_a_trimmed_count_above_the_threshold_in_fixed_point(
    threshold: float, stat: str
) -> None:
    assert slower_than(threshold) == stat


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_a_threshold_that_is_no_positive_number_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        slower_than(bad)


def test_without_a_threshold_the_slow_count_is_not_asked_for() -> None:
    queries = slot_queries(slot_sources("api", OUTPUTS, ["green"]))
    assert [q.id for q in queries] == ["req_green", "err_green", "p99_green", "cpu_green"]


def test_with_a_threshold_each_slot_adds_one_trimmed_count_of_its_response_time() -> None:
    queries = slot_queries(slot_sources("api", OUTPUTS, ["green", "blue"], latency_threshold=0.35))

    assert len(queries) == 2 * QUERIES_PER_SLOT
    slow = {q.id: q for q in queries if q.id.startswith("slow_")}
    assert set(slow) == {"slow_green", "slow_blue"}
    p99 = next(q for q in queries if q.id == "p99_green")
    assert (slow["slow_green"].metric_name, slow["slow_green"].dimensions) == (
        p99.metric_name,
        p99.dimensions,
    )
    assert slow["slow_green"].namespace == SLOW.namespace
    assert slow["slow_green"].stat == "TC(0.35:)"


def test_a_tick_reads_the_slow_counts_in_the_same_single_request(fake_cloudwatch: FakeCloudWatch) -> None:
    fake_cloudwatch.replies = [
        _reply(
            {
                "req_green": [(T0, 100.0), (T0 + 60, 120.0)],
                "p99_green": [(T0, 0.3), (T0 + 60, 0.7)],
                # a trimmed count is interpolated: each period's count is rounded
                "slow_green": [(T0, 1.4), (T0 + 60, 3.6)],
                "req_blue": [(T0, 400.0), (T0 + 60, 500.0)],
                "slow_blue": [],  # no datapoint: no slow request
            }
        )
    ]
    provider = CloudWatchProvider.from_session(
        AwsSession("us-east-1", max_attempts=1, endpoint_url=fake_cloudwatch.url)
    )
    sources = slot_sources("api", OUTPUTS, ["green", "blue"], latency_threshold=0.5)

    readings = provider.read(sources, T0, T0 + 120, 60)

    ((_, body),) = fake_cloudwatch.received
    stats = {q["Id"]: q["MetricStat"]["Stat"] for q in body["MetricDataQueries"]}
    assert stats["slow_green"] == stats["slow_blue"] == "TC(0.5:)"
    assert readings.slots["green"] == SlotMetrics(requests=220, errors=0, p99=0.7, slow=5, slow_threshold=0.5)
    assert readings.slots["blue"] == SlotMetrics(requests=900, errors=0, slow=0, slow_threshold=0.5)
    assert (provider.calls, provider.requests, provider.metrics_requested) == (1, 1, 10)


def test_a_slow_count_that_is_not_a_number_is_no_data() -> None:
    m = aggregate([100.0], [1.0], [0.3], None, slow=[math.nan], slow_threshold=0.4)

    assert m is not None and m.unusable == ("slow nan",) and m.slow is None


def test_a_slow_count_is_never_more_than_the_requests() -> None:
    m = aggregate([10.0], [0.0], [0.3], None, slow=[10.6], slow_threshold=0.4)

    assert m is not None and m.slow == 10


def test_a_slow_count_needs_its_threshold() -> None:
    with pytest.raises(ValueError, match="threshold"):
        SlotMetrics(requests=10, errors=0, slow=1)
