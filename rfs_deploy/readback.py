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
