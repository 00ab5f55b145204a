"""The physics' own record of every metric it produced, and their publication to moto.

Every datapoint is kept here as a full statistic set (count, sum, min, max, p99) with the
virtual time at which CloudWatch would show it: missing datapoints never show, delayed ones show
late (the scenario's ``metrics`` flakiness). Datapoints are written to moto's CloudWatch when
they become visible, with the real namespaces and dimensions. The record answers what moto
cannot: p99 (moto's GetMetricData crashes on percentiles) and alarm evaluation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rfs_deploy.sim.traffic import Summary

Dimensions = tuple[tuple[str, str], ...]
#: (namespace, metric name, dimensions sorted by name)
MetricKey = tuple[str, str, Dimensions]

NEVER = math.inf
#: Metrics whose datapoints are counts (published as a plain value, summed over a period).
COUNT_UNIT = "Count"


def metric_key(namespace: str, name: str, dimensions: Iterable[tuple[str, str]]) -> MetricKey:
    """The record's key: dimensions sorted, as CloudWatch treats them (order does not matter)."""
    return namespace, name, tuple(sorted((str(k), str(v)) for k, v in dimensions))


@dataclass(frozen=True)
class Datapoint:
    timestamp: float
    summary: Summary
    visible_at: float
    unit: str


class MetricRecord:
    """All datapoints by metric, and the queue of those not yet in moto's CloudWatch."""

    def __init__(self, cloudwatch: Any) -> None:
        self._cloudwatch = cloudwatch
        self._points: dict[MetricKey, dict[float, Datapoint]] = {}
        self._pending: list[tuple[MetricKey, Datapoint]] = []

    def add(self, key: MetricKey, timestamp: float, summary: Summary, visible_at: float, unit: str) -> None:
        point = Datapoint(timestamp, summary, visible_at, unit)
        self._points.setdefault(key, {})[timestamp] = point
        if visible_at != NEVER:
            self._pending.append((key, point))

    def publish(self, now: float) -> int:
        """Write every datapoint visible by ``now`` to moto; returns how many were written."""
        due = [(k, p) for k, p in self._pending if p.visible_at <= now]
        if not due:
            return 0
        self._pending = [(k, p) for k, p in self._pending if p.visible_at > now]
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for (namespace, name, dims), point in due:
            by_namespace.setdefault(namespace, []).append(_datum(name, dims, point))
        for namespace, data in by_namespace.items():
            for offset in range(0, len(data), 500):
                self._cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[offset : offset + 500])
        return len(due)

    def republish(self, now: float) -> None:
        """Queue every visible datapoint again (moto was rebuilt empty) and publish."""
        self._pending = [
            (k, p) for k, pts in self._points.items() for p in pts.values() if p.visible_at != NEVER
        ]
        self.publish(now)

    def points(self, key: MetricKey, start: float, end: float, now: float) -> list[Datapoint]:
        """Datapoints of ``key`` stamped in [start, end) that CloudWatch shows at ``now``."""
        series = self._points.get(key, {})
        return [p for ts, p in sorted(series.items()) if start <= ts < end and p.visible_at <= now]

    def statistic(
        self, key: MetricKey, stat: str, start: float, end: float, period: int, now: float
    ) -> tuple[list[float], list[float]]:
        """(timestamps, values) of ``stat`` per ``period`` over [start, end), oldest first."""
        buckets: dict[float, list[Summary]] = {}
        for point in self.points(key, start, end, now):
            bucket = start + ((point.timestamp - start) // period) * period
            buckets.setdefault(bucket, []).append(point.summary)
        stamps = sorted(buckets)
        return stamps, [combine(buckets[ts], stat) for ts in stamps]

    # ----------------------------------------------------------------- persistence

    def to_json(self) -> list[list[Any]]:
        rows: list[list[Any]] = []
        for (namespace, name, dims), series in self._points.items():
            for point in series.values():
                s = point.summary
                visible = None if point.visible_at == NEVER else point.visible_at
                rows.append(
                    [
                        namespace,
                        name,
                        [list(d) for d in dims],
                        point.timestamp,
                        point.unit,
                        visible,
                        [s.count, s.sum, s.minimum, s.maximum, s.p99],
                        *([[list(pair) for pair in s.histogram]] if s.histogram else []),
                    ]
                )
        return rows

    def load_json(self, rows: Sequence[Sequence[Any]]) -> None:
        self._points.clear()
        self._pending.clear()
        for namespace, name, dims, ts, unit, visible, stats, *rest in rows:
            key = metric_key(namespace, name, [tuple(d) for d in dims])
            histogram = tuple((int(b), int(n)) for b, n in rest[0]) if rest else ()
            count, total, low, high, p99 = (float(x) for x in stats)
            summary = Summary(count, total, low, high, p99, histogram)
            point = Datapoint(float(ts), summary, NEVER if visible is None else float(visible), unit)
            self._points.setdefault(key, {})[point.timestamp] = point
            if point.visible_at != NEVER:
                self._pending.append((key, point))


def combine(summaries: Sequence[Summary], stat: str) -> float:
    """One statistic over several minutes' statistic sets.

    ``p99`` over more than one minute is the count-weighted mean of the minutes' p99s (the exact
    value needs the raw samples, which CloudWatch keeps and the sandbox does not).
    """
    count = sum(s.count for s in summaries)
    if stat == "Sum":
        return sum(s.sum for s in summaries)
    if stat == "SampleCount":
        return count
    if stat == "Average":
        return sum(s.sum for s in summaries) / count if count else 0.0
    if stat == "Minimum":
        return min(s.minimum for s in summaries)
    if stat == "Maximum":
        return max(s.maximum for s in summaries)
    if stat.lower() == "p99":
        if len(summaries) == 1:
            return summaries[0].p99
        return sum(s.p99 * s.count for s in summaries) / count if count else 0.0
    found = RANGE_STATISTIC.fullmatch(stat.replace(" ", ""))
    if found is not None:
        kind, low, high = found.group(1).upper(), _bound(found.group(2)), _bound(found.group(3))
        # a range statistic needs the samples: NaN (no data) for a datapoint without them
        within = sum(s.within(low, high) for s in summaries)
        return within if kind == "TC" else 100.0 * within / count if count else math.nan
    raise ValueError(f"the sandbox cannot compute statistic {stat!r}")


#: CloudWatch's trimmed count and percentile rank over absolute bounds, ``TC(0.5:)``, ``PR(:0.3)``,
#: ``PR(0.1:2)``: the observations above the lower bound and at most the upper one (percent
#: bounds, ``TC(10%:90%)``, rank observations instead and are not simulated).
RANGE_STATISTIC = re.compile(r"(TC|PR|tc|pr)\(([0-9.]*):([0-9.]*)\)")


def _bound(text: str) -> float | None:
    return float(text) if text else None


def _datum(name: str, dims: Dimensions, point: Datapoint) -> dict[str, Any]:
    datum: dict[str, Any] = {
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
        "Timestamp": datetime.fromtimestamp(point.timestamp, tz=UTC),
        "Unit": point.unit,
    }
    s = point.summary
    if point.unit == COUNT_UNIT:
        datum["Value"] = s.sum
    else:
        datum["StatisticValues"] = {
            "SampleCount": s.count,
            "Sum": s.sum,
            "Minimum": s.minimum,
            "Maximum": s.maximum,
        }
    return datum
