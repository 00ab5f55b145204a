"""The CloudWatch metrics provider: every slot's metrics in one GetMetricData request a tick.

Everything rfs-deploy knows of CloudWatch's metric API is here: the queries (from the shared
table of :mod:`rfs_deploy.metrics.definitions`), their ids (``req_blue``, ``p99_green``), the
batching (one request per tick, chunked only above CloudWatch's 500-query limit), NextToken
paging, PartialData, and the turn of the series into :class:`~rfs_deploy.metrics.base.SlotMetrics`
by the shared :func:`~rfs_deploy.metrics.base.aggregate`. AWS errors (after botocore's retries)
leave it as :class:`~rfs_deploy.errors.MetricsUnavailable`.

The provider counts what it asked for so benchmarks can report the CloudWatch cost of a tick.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from rfs_deploy.aws.session import AwsSession, aws_errors
from rfs_deploy.errors import AwsError, MetricsUnavailable
from rfs_deploy.logs import get_logger
from rfs_deploy.metrics.base import Period, Readings, SlotMetrics, SlotSource, aggregate
from rfs_deploy.metrics.definitions import (
    P99,
    SLOT_METRICS,
    SLOW,
    MetricDefinition,
    Statistic,
    slower_than,
)

log = get_logger(__name__)

#: CloudWatch accepts at most this many MetricDataQuery structures per GetMetricData request.
MAX_QUERIES_PER_REQUEST = 500
#: Safety stop for a NextToken chain that never ends.
MAX_PAGES = 100
#: Queries per slot in play: one per slot metric, and the slow-request count once the analysis
#: has a latency threshold (one fewer before).
QUERIES_PER_SLOT = len(SLOT_METRICS) + 1

#: Queries of the baseline's history before a release (:meth:`CloudWatchProvider.read_periods`,
#: once per deployment): the slot metrics and the p95 response time of the live slot.
HISTORY_QUERIES = len(SLOT_METRICS) + 1

_QUERY_ID = re.compile(r"[a-z][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class MetricQuery:
    """One CloudWatch metric stat; ``id`` must be unique in a batch (lowercase start)."""

    id: str
    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: Statistic | str
    period: int = 60


@dataclass(frozen=True)
class MetricSeries:
    """The datapoints of one query, oldest first. Empty tuples mean CloudWatch had no data."""

    id: str
    timestamps: tuple[float, ...]
    values: tuple[float, ...]
    #: False when CloudWatch said the result was partial (PartialData) even after paging.
    complete: bool = True


def query_id(short: str, slot: str) -> str:
    """The GetMetricData id of one metric of one slot, e.g. ``query_id("p99", "blue") == "p99_blue"``."""
    return f"{short}_{slot}"


def metric_query(metric: MetricDefinition, source: SlotSource, period: int) -> MetricQuery:
    """The query of one slot metric of one slot (the slow count against the source's threshold)."""
    dimensions = metric.dimension_pairs(
        target_group=source.target_group, load_balancer=source.load_balancer, asg=source.asg_name
    )
    stat: str = metric.statistic
    if metric is SLOW:
        if source.latency_threshold is None:
            raise ValueError(f"the slow-request count of {source.slot} needs a latency threshold")
        stat = slower_than(source.latency_threshold)
    return MetricQuery(
        query_id(metric.short, source.slot), metric.namespace, metric.name, dimensions, stat, period
    )


def _metrics_of(source: SlotSource) -> tuple[MetricDefinition, ...]:
    return (*SLOT_METRICS, SLOW) if source.latency_threshold is not None else SLOT_METRICS


def slot_queries(sources: Sequence[SlotSource], period: int = 60) -> list[MetricQuery]:
    """The queries the analysis needs for ``sources``, at most :data:`QUERIES_PER_SLOT` per slot.

    Per slot, in the order of :data:`~rfs_deploy.metrics.definitions.SLOT_METRICS`: requests,
    5xx errors and p99 response time of the slot's target group behind the load balancer, and
    the average CPU of its Auto Scaling group; then, when the source has a latency threshold,
    the count of its requests slower than it (``TC(t:)`` of the response time). A slot given
    twice is asked for once.
    """
    unique = {source.slot: source for source in sources}
    return [metric_query(m, source, period) for source in unique.values() for m in _metrics_of(source)]


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


class CloudWatchProvider:
    """:class:`~rfs_deploy.metrics.base.MetricsProvider` over CloudWatch GetMetricData.

    Counters (never reset by the provider): ``calls`` — :meth:`get_metric_data` invocations
    (ticks); ``requests`` — GetMetricData API requests, pages included; ``metrics_requested`` —
    queries sent, summed over requests (CloudWatch bills GetMetricData per metric requested).
    """

    name = "cloudwatch"

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0
        self.requests = 0
        self.metrics_requested = 0

    @classmethod
    def from_session(cls, session: AwsSession) -> CloudWatchProvider:
        """A provider over the session's ``cloudwatch`` client."""
        return cls(session.client("cloudwatch"))

    def read(self, sources: Sequence[SlotSource], start: float, end: float, period: int) -> Readings:
        """Every slot of ``sources`` over [start, end) from one GetMetricData call.

        The answer is partial when CloudWatch's last word on any series was not ``Complete``.
        Raises MetricsUnavailable when CloudWatch fails after botocore's retries.
        """
        try:
            series = self.get_metric_data(slot_queries(sources, period), start, end)
        except AwsError as exc:
            raise MetricsUnavailable(str(exc)) from exc
        partial = any(not s.complete for s in series.values())

        def values(metric: MetricDefinition, slot: str) -> tuple[float, ...] | None:
            found = series.get(query_id(metric.short, slot))
            return found.values if found is not None else None

        slots: dict[str, SlotMetrics | None] = {
            source.slot: aggregate(
                **{str(m.kind): values(m, source.slot) for m in _metrics_of(source)},
                slow_threshold=source.latency_threshold,
            )
            for source in sources
        }
        return Readings(slots, partial=partial)

    def read_periods(
        self, sources: Sequence[SlotSource], start: float, end: float, period: int
    ) -> dict[str, list[Period]]:
        """Every slot of ``sources`` period by period over [start, end), from one GetMetricData
        call: the slot queries and each slot's p95 response time (the baseline's history before
        a release, :mod:`rfs_deploy.drive.history`). A period without a request datapoint is left
        out. Raises MetricsUnavailable as :meth:`read`."""
        queries = slot_queries(sources, period)
        for source in {s.slot: s for s in sources}.values():
            p99 = metric_query(P99, source, period)
            queries.append(replace(p99, id=query_id("p95", source.slot), stat="p95"))
        try:
            series = self.get_metric_data(queries, start, end)
        except AwsError as exc:
            raise MetricsUnavailable(str(exc)) from exc

        def at(short: str, slot: str) -> dict[float, float]:
            found = series.get(query_id(short, slot))
            return {} if found is None else dict(zip(found.timestamps, found.values, strict=True))

        answer: dict[str, list[Period]] = {}
        for source in sources:
            # in the order of aggregate's arguments: requests, errors, p99, cpu
            by_kind = {str(m.kind): at(m.short, source.slot) for m in SLOT_METRICS}
            p95 = at("p95", source.slot)
            periods: list[Period] = []
            for ts in sorted(by_kind["requests"]):
                req, err, p99s, cpu = ([values[ts]] if ts in values else None for values in by_kind.values())
                metrics = aggregate(req, err, p99s, cpu)
                if metrics is not None:
                    periods.append(Period(ts, metrics, p95.get(ts)))
            answer[source.slot] = periods
        return answer

    def get_metric_data(
        self, queries: Sequence[MetricQuery], start: float, end: float
    ) -> dict[str, MetricSeries]:
        """Every query over [start, end), by id, datapoints oldest first: one logical call,
        paged internally.

        A series is ``complete=False`` when CloudWatch's last word on it was not ``Complete``
        (PartialData, InternalError) or when it returned nothing at all for the id. Values are
        handed on as CloudWatch gave them, NaN and infinity included: the analysis takes such a
        value as no data (:class:`~rfs_deploy.metrics.base.SlotMetrics`), never as a number.
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


__all__ = [
    "HISTORY_QUERIES",
    "MAX_QUERIES_PER_REQUEST",
    "QUERIES_PER_SLOT",
    "CloudWatchProvider",
    "MetricQuery",
    "MetricSeries",
    "metric_query",
    "query_id",
    "slot_queries",
]
