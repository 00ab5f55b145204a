"""CloudWatch adapters: batched GetMetricData (MetricsSource) and alarm states (AlarmReader).

One :meth:`CloudWatchMetrics.get_metric_data` call is one driver tick: every query of every target
group in play goes into a single GetMetricData request (chunked only above CloudWatch's 500-query
limit), paged with NextToken. The adapter counts what it asked for so benchmarks can report the
CloudWatch cost of a tick.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rfs_deploy.aws.session import AwsSession, aws_errors
from rfs_deploy.config.model import SlotName
from rfs_deploy.drive.protocols import MetricQuery, MetricSeries
from rfs_deploy.errors import AwsError
from rfs_deploy.logs import get_logger
from rfs_deploy.outputs import ServiceOutputs

log = get_logger(__name__)

#: CloudWatch accepts at most this many MetricDataQuery structures per GetMetricData request.
MAX_QUERIES_PER_REQUEST = 500
#: DescribeAlarms accepts at most this many AlarmNames per request.
MAX_ALARM_NAMES_PER_REQUEST = 100
#: Safety stop for a NextToken chain that never ends.
MAX_PAGES = 100

ALB_NAMESPACE = "AWS/ApplicationELB"
EC2_NAMESPACE = "AWS/EC2"

_QUERY_ID = re.compile(r"[a-z][a-zA-Z0-9_]*")


def query_id(kind: str, slot: SlotName) -> str:
    """The GetMetricData id of one metric of one slot, e.g. ``query_id("p99", "blue") == "p99_blue"``."""
    return f"{kind}_{slot}"


def service_queries(
    outputs: ServiceOutputs, slots: Sequence[SlotName], period: int = 60
) -> list[MetricQuery]:
    """The queries the analysis needs for ``slots`` of one service, four per slot.

    Per slot: ``req_<slot>`` RequestCount Sum, ``err_<slot>`` HTTPCode_Target_5XX_Count Sum and
    ``p99_<slot>`` TargetResponseTime p99 (AWS/ApplicationELB, TargetGroup + LoadBalancer), and
    ``cpu_<slot>`` CPUUtilization Average of the slot's Auto Scaling group (AWS/EC2).
    """
    queries: list[MetricQuery] = []
    for slot in dict.fromkeys(slots):
        out = outputs.slot(slot)
        alb = (("TargetGroup", out.target_group_dimension), ("LoadBalancer", outputs.load_balancer_dimension))
        errors = "HTTPCode_Target_5XX_Count"
        queries += [
            MetricQuery(query_id("req", slot), ALB_NAMESPACE, "RequestCount", alb, "Sum", period),
            MetricQuery(query_id("err", slot), ALB_NAMESPACE, errors, alb, "Sum", period),
            MetricQuery(query_id("p99", slot), ALB_NAMESPACE, "TargetResponseTime", alb, "p99", period),
            MetricQuery(
                query_id("cpu", slot),
                EC2_NAMESPACE,
                "CPUUtilization",
                (("AutoScalingGroupName", out.asg_name),),
                "Average",
                period,
            ),
        ]
    return queries


def _request_query(query: MetricQuery) -> dict[str, Any]:
    return {
        "Id": query.id,
        "MetricStat": {
            "Metric": {
                "Namespace": query.namespace,
                "MetricName": query.metric_name,
                "Dimensions": [{"Name": name, "Value": value} for name, value in query.dimensions],
            },
            "Period": query.period,
            "Stat": query.stat,
        },
        "ReturnData": True,
    }


def _check_ids(queries: Sequence[MetricQuery]) -> None:
    seen: set[str] = set()
    for query in queries:
        if not _QUERY_ID.fullmatch(query.id):
            raise ValueError(f"metric query id {query.id!r} must start lowercase and be [a-zA-Z0-9_]")
        if query.id in seen:
            raise ValueError(f"metric query id {query.id!r} appears twice in one batch")
        seen.add(query.id)


def _epoch(value: datetime | float | int) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


@dataclass
class _Collected:
    """Datapoints of one query gathered over pages; ``status`` is the last one CloudWatch gave."""

    points: dict[float, float] = field(default_factory=dict)
    status: str | None = None

    def add(self, result: dict[str, Any]) -> None:
        for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
            self.points[_epoch(ts)] = float(value)
        self.status = result.get("StatusCode", self.status)

    def series(self, query_id: str) -> MetricSeries:
        ordered = sorted(self.points.items())
        return MetricSeries(
            id=query_id,
            timestamps=tuple(ts for ts, _ in ordered),
            values=tuple(v for _, v in ordered),
            complete=self.status == "Complete",
        )


class CloudWatchMetrics:
    """MetricsSource over CloudWatch GetMetricData.

    Counters (never reset by the adapter): ``calls`` — get_metric_data invocations (ticks);
    ``requests`` — GetMetricData API requests, pages included; ``metrics_requested`` — queries
    sent, summed over requests (CloudWatch bills GetMetricData per metric requested).
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0
        self.requests = 0
        self.metrics_requested = 0

    @classmethod
    def from_session(cls, session: AwsSession) -> CloudWatchMetrics:
        """An adapter over the session's ``cloudwatch`` client."""
        return cls(session.client("cloudwatch"))

    def get_metric_data(
        self, queries: Sequence[MetricQuery], start: float, end: float
    ) -> dict[str, MetricSeries]:
        """Every query over [start, end), by id, datapoints oldest first (see MetricsSource).

        A series is ``complete=False`` when CloudWatch's last word on it was not ``Complete``
        (PartialData, InternalError) or when it returned nothing at all for the id. Values are
        handed on as CloudWatch gave them, NaN and infinity included: the analysis takes such a
        value as no data (:class:`rfs_deploy.drive.judge.SlotMetrics`), never as a number.
        Raises ValueError for a bad or duplicate id, AwsError when CloudWatch fails after retries.
        """
        _check_ids(queries)
        self.calls += 1
        if not queries:
            return {}
        window = (datetime.fromtimestamp(start, tz=UTC), datetime.fromtimestamp(end, tz=UTC))
        collected = {query.id: _Collected() for query in queries}
        for offset in range(0, len(queries), MAX_QUERIES_PER_REQUEST):
            self._fetch(queries[offset : offset + MAX_QUERIES_PER_REQUEST], window, collected)
        return {qid: got.series(qid) for qid, got in collected.items()}

    def _fetch(
        self,
        chunk: Sequence[MetricQuery],
        window: tuple[datetime, datetime],
        collected: dict[str, _Collected],
    ) -> None:
        request: dict[str, Any] = {
            "MetricDataQueries": [_request_query(q) for q in chunk],
            "StartTime": window[0],
            "EndTime": window[1],
        }
        for _ in range(MAX_PAGES):
            with aws_errors("CloudWatch GetMetricData"):
                page = self._client.get_metric_data(**request)
            self.requests += 1
            self.metrics_requested += len(chunk)
            for result in page.get("MetricDataResults", []):
                if result.get("Id") in collected:
                    collected[result["Id"]].add(result)
            for message in page.get("Messages", []):
                log.debug("GetMetricData says %s: %s", message.get("Code"), message.get("Value"))
            token = page.get("NextToken")
            if not token:
                return
            request["NextToken"] = token
        raise AwsError(f"CloudWatch GetMetricData failed: still paging after {MAX_PAGES} pages")


class CloudWatchAlarms:
    """AlarmReader over CloudWatch DescribeAlarms (metric and composite alarms)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def from_session(cls, session: AwsSession) -> CloudWatchAlarms:
        """An adapter over the session's ``cloudwatch`` client."""
        return cls(session.client("cloudwatch"))

    def states(self, names: Sequence[str]) -> dict[str, str]:
        """StateValue (OK | ALARM | INSUFFICIENT_DATA) of each named alarm that exists."""
        unique = list(dict.fromkeys(names))
        states: dict[str, str] = {}
        for offset in range(0, len(unique), MAX_ALARM_NAMES_PER_REQUEST):
            batch = unique[offset : offset + MAX_ALARM_NAMES_PER_REQUEST]
            request: dict[str, Any] = {"AlarmNames": batch, "AlarmTypes": ["MetricAlarm", "CompositeAlarm"]}
            for _ in range(MAX_PAGES):
                with aws_errors("CloudWatch DescribeAlarms"):
                    page = self._client.describe_alarms(**request)
                for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                    states[alarm["AlarmName"]] = alarm["StateValue"]
                if not page.get("NextToken"):
                    break
                request["NextToken"] = page["NextToken"]
        return states

    def firing(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` in state ALARM now, in the order given; unknown names are not firing."""
        states = self.states(names)
        return [name for name in dict.fromkeys(names) if states.get(name) == "ALARM"]
