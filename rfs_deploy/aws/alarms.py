"""CloudWatch alarm states (AlarmReader): DescribeAlarms, batched and paged.

Metrics are read by the CloudWatch metrics provider, :mod:`rfs_deploy.metrics.cloudwatch`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rfs_deploy.aws.session import AwsSession, aws_errors
from rfs_deploy.readback import AlarmDatapoint, AlarmDetails

#: DescribeAlarms accepts at most this many AlarmNames per request.
MAX_ALARM_NAMES_PER_REQUEST = 100
#: Safety stop for a NextToken chain that never ends.
MAX_PAGES = 100


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
        return {name: alarm["StateValue"] for name, alarm in self._describe(names).items()}

    def _describe(self, names: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        """The DescribeAlarms entry of each named alarm that exists."""
        unique = list(dict.fromkeys(names))
        states: dict[str, Mapping[str, Any]] = {}
        for offset in range(0, len(unique), MAX_ALARM_NAMES_PER_REQUEST):
            batch = unique[offset : offset + MAX_ALARM_NAMES_PER_REQUEST]
            request: dict[str, Any] = {"AlarmNames": batch, "AlarmTypes": ["MetricAlarm", "CompositeAlarm"]}
            for _ in range(MAX_PAGES):
                with aws_errors("CloudWatch DescribeAlarms"):
                    page = self._client.describe_alarms(**request)
                for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                    states[alarm["AlarmName"]] = alarm
                if not page.get("NextToken"):
                    break
                request["NextToken"] = page["NextToken"]
        return states

    def firing(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` in state ALARM now, in the order given; unknown names are not firing."""
        states = self.states(names)
        return [name for name in dict.fromkeys(names) if states.get(name) == "ALARM"]

    def firing_details(self, names: Sequence[str]) -> list[AlarmDetails]:
        """The firing ones of ``names`` (as :meth:`firing`) with their threshold and the datapoints
        CloudWatch evaluated (its ``StateReasonData``)."""
        found = self._describe(names)
        return [
            alarm_details(found[name])
            for name in dict.fromkeys(names)
            if name in found and found[name].get("StateValue") == "ALARM"
        ]


def alarm_details(alarm: Mapping[str, Any]) -> AlarmDetails:
    """An :class:`AlarmDetails` from one DescribeAlarms entry (metric or composite alarm).

    ``StateReasonData`` is JSON text written by CloudWatch (``threshold``, ``period``,
    ``statistic``, ``evaluatedDatapoints`` with ``timestamp`` and ``value``, or only
    ``recentDatapoints``); a missing or unreadable one leaves the datapoints empty, since the
    alarm's state and reason alone still explain the failure."""
    data = _reason_data(alarm.get("StateReasonData"))
    queries = alarm.get("Metrics") or []
    names = [str(alarm["MetricName"])] if alarm.get("MetricName") else []
    names += [str(q["MetricStat"]["Metric"]["MetricName"]) for q in queries if "MetricStat" in q]
    expression = next(
        (str(q["Expression"]) for q in queries if "Expression" in q and q.get("ReturnData", True)), None
    )
    metric = expression or (names[0] if names else str(alarm.get("AlarmRule") or "composite"))
    threshold = alarm.get("Threshold", data.get("threshold"))
    period = alarm.get("Period") or data.get("period")
    return AlarmDetails(
        name=str(alarm["AlarmName"]),
        metric=metric,
        metric_names=tuple(dict.fromkeys(names)),
        threshold=None if threshold is None else float(threshold),
        comparison=str(alarm.get("ComparisonOperator") or ""),
        datapoints=_datapoints(data),
        reason=str(alarm.get("StateReason") or ""),
        period=None if period is None else int(period),
        statistic=alarm.get("ExtendedStatistic") or alarm.get("Statistic") or data.get("statistic"),
    )


def _reason_data(text: object) -> dict[str, Any]:
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _datapoints(data: Mapping[str, Any]) -> tuple[AlarmDatapoint, ...]:
    evaluated = data.get("evaluatedDatapoints")
    points: list[AlarmDatapoint] = []
    if isinstance(evaluated, list):
        for point in evaluated:
            if not isinstance(point, dict) or "timestamp" not in point:
                continue
            at = parse_timestamp(str(point["timestamp"]))
            value = point.get("value")
            if at is not None:
                points.append(AlarmDatapoint(at, None if value is None else float(value)))
        if points:
            return tuple(sorted(points, key=lambda p: p.at or 0.0))
    # only the values, without their times
    recent = data.get("recentDatapoints")
    if isinstance(recent, list):
        return tuple(AlarmDatapoint(None, float(v)) for v in recent if isinstance(v, int | float))
    return ()


def parse_timestamp(text: str) -> float | None:
    """Epoch seconds of a StateReasonData timestamp (``2024-10-26T18:59:00.000+0000``)."""
    for layout in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, layout).timestamp()
        except ValueError:
            continue
    return None
