"""What the driver reads back from AWS, as plain values: target health, listener rules, refreshes.

The AWS adapters (:mod:`rfs_deploy.aws`) produce them, the sandbox and the fakes too, and the
driver reads them through the seams of :mod:`rfs_deploy.drive.protocols` (which re-exports them).
They live apart from both so that the adapters need nothing of the driver's package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TargetHealth:
    """Target counts of one target group by state."""

    healthy: int = 0
    unhealthy: int = 0
    initial: int = 0
    draining: int = 0
    unused: int = 0

    @property
    def total(self) -> int:
        return self.healthy + self.unhealthy + self.initial + self.unused


@dataclass(frozen=True)
class RuleView:
    """A listener rule as ELBv2 reports it: priority, header conditions, forward target groups."""

    priority: int
    #: (header name, values) pairs of http-header conditions.
    headers: tuple[tuple[str, tuple[str, ...]], ...]
    forward: Mapping[str, int]


@dataclass(frozen=True)
class RefreshStatus:
    """One Auto Scaling instance refresh."""

    refresh_id: str
    #: Pending | InProgress | Successful | Failed | Cancelling | Cancelled |
    #: RollbackInProgress | RollbackFailed | RollbackSuccessful | Baking
    status: str
    percentage_complete: int
    instances_to_update: int
    status_reason: str = ""

    @property
    def done(self) -> bool:
        return self.status in {"Successful", "Failed", "Cancelled", "RollbackFailed", "RollbackSuccessful"}

    @property
    def rolled_back_by_aws(self) -> bool:
        return self.status.startswith("Rollback")


@dataclass(frozen=True)
class AlarmDatapoint:
    """One datapoint an alarm evaluated: the start of its period (epoch seconds; None when
    CloudWatch gave only the values) and its value."""

    at: float | None
    value: float | None


@dataclass(frozen=True)
class AlarmDetails:
    """A firing alarm with the numbers behind its state, as CloudWatch's ``StateReasonData``
    gives them (``threshold``, ``evaluatedDatapoints``), so a rollback it caused can show them."""

    name: str
    #: What the alarm watches: the metric's name, or the metric-math expression.
    metric: str
    #: The CloudWatch metric names it reads (one, or the metric-math query's metrics).
    metric_names: tuple[str, ...]
    threshold: float | None
    #: CloudWatch's ComparisonOperator, e.g. ``GreaterThanThreshold``.
    comparison: str
    #: The evaluated datapoints, oldest first (may be empty: no StateReasonData).
    datapoints: tuple[AlarmDatapoint, ...] = ()
    #: CloudWatch's ``StateReason``, one line.
    reason: str = ""
    period: int | None = None
    statistic: str | None = None

    @property
    def breaching(self) -> tuple[AlarmDatapoint, ...]:
        """The datapoints on the alarming side of the threshold."""
        if self.threshold is None:
            return ()
        return tuple(
            p
            for p in self.datapoints
            if p.value is not None and breaches(self.comparison, p.value, self.threshold)
        )


def breaches(comparison: str, value: float, threshold: float) -> bool:
    """Whether ``value`` is on the alarming side of ``threshold`` for a CloudWatch comparison."""
    if comparison in ("GreaterThanOrEqualToThreshold",):
        return value >= threshold
    if comparison in ("LessThanThreshold", "LessThanLowerThreshold"):
        return value < threshold
    if comparison == "LessThanOrEqualToThreshold":
        return value <= threshold
    return value > threshold
