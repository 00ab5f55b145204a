"""The driver's seams: everything it knows of the world comes through these Protocols.

Production implementations: :mod:`rfs_deploy.drive.pulumi_backend` (StackBackend),
the boto3 adapters of the ``aws`` package (TrafficReader, FleetControl, AlarmReader, ImageFinder) and
:class:`SystemClock`; metrics come through :class:`rfs_deploy.metrics.MetricsProvider`. The
sandbox (:mod:`rfs_deploy.sim`) implements the same Protocols; :mod:`rfs_deploy.testing` ships
small in-memory fakes for tests and for users' own tests. The values read back from AWS
(TargetHealth, RuleView, RefreshStatus, AlarmDetails) are defined in :mod:`rfs_deploy.readback` and
re-exported here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from rfs_deploy.config.model import ReleaseState, StackConfig
from rfs_deploy.readback import AlarmDetails, RefreshStatus, RuleView, TargetHealth

# --------------------------------------------------------------------------- stack backend


@dataclass(frozen=True)
class UpdateResult:
    """One finished stack update."""

    version: int
    message: str
    #: Resource operations by kind, e.g. {"update": 2, "same": 14}.
    changes: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class HistoryEntry:
    """One stack history version, newest first in :meth:`StackBackend.history`."""

    version: int
    message: str
    result: Literal["succeeded", "failed", "in-progress"]
    start_time: float
    end_time: float | None
    #: The release state (``rfs-deploy:release``) the update ran with, per service; None when
    #: the update's config did not carry one (e.g. a stack created by hand).
    release: Mapping[str, ReleaseState] | None


@runtime_checkable
class StackBackend(Protocol):
    """A stack: its config, updates, history and outputs (the Pulumi Automation API)."""

    stack_name: str

    def read_config(self) -> StackConfig:
        """The stack's whole ``rfs-deploy`` config as it stands now (validated)."""
        ...

    def write_release(self, release: Mapping[str, ReleaseState]) -> None:
        """Replace ``rfs-deploy:release`` and nothing else; no cloud resource changes yet."""
        ...

    def up(self, message: str, on_event: Callable[[str], None] | None = None) -> UpdateResult:
        """Run an update with the current config; ``message`` is stored in stack history.

        Raises StackBusy when another update holds the stack, BackendError when it fails.
        """
        ...

    def history(self, limit: int | None = None) -> list[HistoryEntry]:
        """Stack history, newest first, with the release state each update ran with."""
        ...

    def outputs(self) -> dict[str, Any]:
        """The stack's outputs as plain values."""
        ...

    def export(self) -> dict[str, Any]:
        """The stack's deployment (state) as exported by ``pulumi stack export``; for forensics."""
        ...


class ImageFinder(Protocol):
    """A release's machine image by tag (``artifact.lookupTag``)."""

    def find(self, tag: str, value: str) -> str | None:
        """The newest image of this account tagged ``tag=value``, or None."""
        ...


# --------------------------------------------------------------------------- alarms


class AlarmReader(Protocol):
    """CloudWatch alarms."""

    def firing(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` whose state is ALARM now."""
        ...

    def firing_details(self, names: Sequence[str]) -> list[AlarmDetails]:
        """The same alarms with the numbers behind their state (threshold, evaluated datapoints),
        so the rollback an alarm causes is recorded with them."""
        ...


# --------------------------------------------------------------------------- traffic & fleet


class TrafficReader(Protocol):
    """ELBv2 read-back: what the load balancer really does now."""

    def forward_weights(self, listener_arn: str) -> dict[str, int]:
        """Target group ARN -> weight of the listener's default forward action."""
        ...

    def stickiness(self, listener_arn: str) -> int | None:
        """Seconds of target group stickiness on the default action, None when off."""
        ...

    def rules(self, listener_arn: str) -> list[RuleView]:
        """Non-default listener rules, by ascending priority."""
        ...

    def target_health(self, target_group_arn: str) -> TargetHealth:
        """Counts of the target group's targets by health state."""
        ...


class FleetControl(Protocol):
    """Auto Scaling: the instance refresh the program's ``pulumi up`` started, and a group's size."""

    def desired_capacity(self, asg_name: str) -> int | None:
        """The group's desired capacity now (what its scaling policy made it, for a service with
        ``autoscaling``), None when there is no such group."""
        ...

    def latest_refresh(self, asg_name: str) -> RefreshStatus | None:
        """The most recent instance refresh of the group, None when it never had one."""
        ...

    def cancel_refresh(self, asg_name: str) -> None:
        """Cancel the group's active refresh (instances already replaced stay)."""
        ...

    def resume_refresh(self, asg_name: str) -> str:
        """Start the group's refresh again after it was cancelled (a rolling release held at a
        checkpoint): only the instances not yet on the group's launch template are replaced, with
        the latest refresh's batch preferences, without AWS's alarm guard or auto rollback (the
        driver judges). Returns the new refresh's id."""
        ...


# --------------------------------------------------------------------------- time


class Clock(Protocol):
    """Time for the driver. The sandbox and tests use a virtual clock."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (virtual clocks advance instead)."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
