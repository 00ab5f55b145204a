"""Alarm evaluation, which moto never does: the sandbox judges each alarm like CloudWatch would.

Every metric period the evaluator reads the alarms the program created (DescribeAlarms on
moto), computes their metric over the last ``EvaluationPeriods`` periods from the physics'
record (plain statistics, ``p99`` and metric math such as ``m2/m1`` alike), applies
``DatapointsToAlarm`` and ``TreatMissingData``, and moves the alarm with ``SetAlarmState`` when
its state changes, so the production :class:`~rfs_deploy.aws.CloudWatchAlarms` reads it back.
Each change carries ``StateReasonData`` as CloudWatch writes it (``threshold``, ``period``,
``statistic``, ``recentDatapoints``, ``evaluatedDatapoints`` with their timestamps), so a rollback
an alarm caused is explained with the alarm's own numbers.
"""

from __future__ import annotations

import ast
import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rfs_deploy.sim.record import MetricRecord, metric_key

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}

_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


_MATH_COMPARE: dict[type, Callable[[float, float], bool]] = {
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Eq: operator.eq,
}


def evaluate_expression(expression: str, values: Mapping[str, float | None]) -> float | None:
    """A metric-math expression over one timestamp's values (None: no value at that time).

    Supports ids, numbers, ``+ - * /``, parentheses, ``FILL(x, value)``, one comparison
    (``> >= < <= ==``: 1 or 0) and ``IF(condition, then, else)``; division by zero and a missing
    operand give None, as CloudWatch drops such points.
    """

    def walk(node: ast.AST) -> float | None:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise ValueError(f"unknown metric id {node.id!r}")
            return values[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = walk(node.operand)
            return None if inner is None else -inner
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if left is None or right is None or (isinstance(node.op, ast.Div) and right == 0):
                return None
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _MATH_COMPARE:
            left, right = walk(node.left), walk(node.comparators[0])
            if left is None or right is None:
                return None
            return 1.0 if _MATH_COMPARE[type(node.ops[0])](left, right) else 0.0
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.upper() == "IF":
            condition, then, otherwise = node.args
            chosen = walk(condition)
            if chosen is None:
                return None
            return walk(then) if chosen != 0 else walk(otherwise)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.upper() == "FILL":
            first, fallback = (walk(arg) for arg in node.args)
            return first if first is not None else fallback
        raise ValueError(f"unsupported metric math: {ast.dump(node)[:60]}")

    return walk(ast.parse(expression, mode="eval"))


class AlarmEvaluator:
    """Evaluates every metric alarm in moto against the record and sets its state."""

    def __init__(self, cloudwatch: Any, record: MetricRecord) -> None:
        self._cloudwatch = cloudwatch
        self._record = record

    def evaluate_all(self, now: float) -> dict[str, str]:
        """Evaluate every alarm at ``now``; returns the alarms whose state changed, new state."""
        changed: dict[str, str] = {}
        paginator = self._cloudwatch.get_paginator("describe_alarms")
        for page in paginator.paginate(AlarmTypes=["MetricAlarm"]):
            for alarm in page.get("MetricAlarms", []):
                state, reason, data = self._judge(alarm, now)
                if state is not None and state != alarm.get("StateValue"):
                    self._cloudwatch.set_alarm_state(
                        AlarmName=alarm["AlarmName"],
                        StateValue=state,
                        StateReason=reason,
                        StateReasonData=json.dumps(data),
                    )
                    changed[alarm["AlarmName"]] = state
        return changed

    def evaluate(self, alarm: Mapping[str, Any], now: float) -> tuple[str | None, str]:
        """(new state or None to keep it, reason) for one DescribeAlarms entry."""
        state, reason, _ = self._judge(alarm, now)
        return state, reason

    def _judge(self, alarm: Mapping[str, Any], now: float) -> tuple[str | None, str, dict[str, Any]]:
        """:meth:`evaluate` with the StateReasonData document of the evaluation."""
        periods = int(alarm.get("EvaluationPeriods") or 1)
        needed = int(alarm.get("DatapointsToAlarm") or periods)
        period = self._period(alarm)
        end = math.floor(now / period) * period
        start = end - periods * period
        values = self._series(alarm, start, end, period)
        compare = _COMPARE.get(str(alarm.get("ComparisonOperator")), operator.gt)
        threshold = float(alarm.get("Threshold") or 0.0)
        treat = str(alarm.get("TreatMissingData") or "missing")
        slots = [start + i * period for i in range(periods)]
        present = [values[t] for t in slots if t in values]
        breaching = sum(1 for v in present if compare(v, threshold))
        missing = periods - len(present)
        if treat == "breaching":
            breaching += missing
        data = reason_data(
            alarm, now, start, period, threshold, [(t, values[t]) for t in slots if t in values]
        )
        if not present and treat in ("missing", "ignore"):
            if treat == "ignore":
                return None, "", data
            return (
                "INSUFFICIENT_DATA",
                f"no datapoints in the last {periods} periods (sandbox evaluation)",
                data,
            )
        if breaching >= needed:
            latest = present[-1] if present else float("nan")
            reason = f"{breaching} of {periods} datapoints breached {threshold} (latest {latest:.4g})"
            return "ALARM", reason, data
        return "OK", f"{breaching} of {periods} datapoints breached {threshold}", data

    @staticmethod
    def _period(alarm: Mapping[str, Any]) -> int:
        if alarm.get("Period"):
            return int(alarm["Period"])
        for metric in alarm.get("Metrics") or []:
            if "MetricStat" in metric:
                return int(metric["MetricStat"]["Period"])
        return 60

    def _stat_series(
        self,
        namespace: str,
        name: str,
        dimensions: Sequence[Mapping[str, str]],
        stat: str,
        start: float,
        end: float,
        period: int,
        now: float,
    ) -> dict[float, float]:
        key = metric_key(namespace, name, [(d["Name"], d["Value"]) for d in dimensions])
        stamps, values = self._record.statistic(key, stat, start, end, period, now)
        return dict(zip(stamps, values, strict=True))

    def _series(self, alarm: Mapping[str, Any], start: float, end: float, period: int) -> dict[float, float]:
        now = end
        metrics = alarm.get("Metrics") or []
        if not metrics:
            stat = alarm.get("ExtendedStatistic") or alarm.get("Statistic") or "Average"
            return self._stat_series(
                alarm["Namespace"],
                alarm["MetricName"],
                alarm.get("Dimensions") or [],
                stat,
                start,
                end,
                period,
                now,
            )
        series: dict[str, dict[float, float]] = {}
        for metric in metrics:
            if "MetricStat" in metric:
                stat = metric["MetricStat"]
                m = stat["Metric"]
                series[metric["Id"]] = self._stat_series(
                    m["Namespace"],
                    m["MetricName"],
                    m.get("Dimensions") or [],
                    stat["Stat"],
                    start,
                    end,
                    period,
                    now,
                )
        result = next((m for m in metrics if m.get("ReturnData", True) and "Expression" in m), None)
        if result is None:
            returned = next((m for m in metrics if m.get("ReturnData", True)), metrics[0])
            return series.get(returned["Id"], {})
        stamps = sorted({t for s in series.values() for t in s})
        out: dict[float, float] = {}
        for t in stamps:
            value = evaluate_expression(result["Expression"], {i: s.get(t) for i, s in series.items()})
            if value is not None:
                out[t] = value
        return out


def reason_data(
    alarm: Mapping[str, Any],
    now: float,
    start: float,
    period: int,
    threshold: float,
    points: Sequence[tuple[float, float]],
) -> dict[str, Any]:
    """The ``StateReasonData`` document CloudWatch writes with a state change: the evaluated
    datapoints (oldest first here; ``recentDatapoints`` lists their values the same way)."""
    data: dict[str, Any] = {
        "version": "1.0",
        "queryDate": cloudwatch_timestamp(now),
        "startDate": cloudwatch_timestamp(start),
        "period": period,
        "recentDatapoints": [value for _, value in points],
        "threshold": threshold,
        "evaluatedDatapoints": [
            {"timestamp": cloudwatch_timestamp(t), "value": value} for t, value in points
        ],
    }
    statistic = alarm.get("ExtendedStatistic") or alarm.get("Statistic")
    if statistic:
        data["statistic"] = statistic
    return data


def cloudwatch_timestamp(at: float) -> str:
    """``at`` (epoch seconds) as StateReasonData writes times: ``2024-10-26T18:59:00.000+0000``."""
    moment = datetime.fromtimestamp(at, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"
