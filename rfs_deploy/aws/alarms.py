"""CloudWatch alarm states (AlarmReader): DescribeAlarms, batched and paged.

Metrics are read by the CloudWatch metrics provider, :mod:`rfs_deploy.metrics.cloudwatch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rfs_deploy.aws.session import AwsSession, aws_errors

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
