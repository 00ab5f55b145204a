"""What a deployment runs against: the seams, the hooks, the record store, the event listeners."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rfs_deploy.drive.protocols import (
    AlarmReader,
    Clock,
    FleetControl,
    ImageFinder,
    StackBackend,
    TrafficReader,
)
from rfs_deploy.drive.records import RecordStore
from rfs_deploy.logs import get_logger
from rfs_deploy.metrics.base import MetricsProvider

if TYPE_CHECKING:
    from rfs_deploy.drive.cancel import Cancellation
    from rfs_deploy.drive.webhooks import Delivery

log = get_logger(__name__)


@dataclass
class Hooks:
    """User hooks (sync or async callables taking a context mapping); see :mod:`rfs_deploy.drive.hooks`."""

    pre_deployment: list[Callable[..., Any]] = field(default_factory=list)
    validation: list[Callable[..., Any]] = field(default_factory=list)
    post_deployment: list[Callable[..., Any]] = field(default_factory=list)
    #: Run after a rollback restored the checkpoint (docs/hooks.md); a failure is only reported.
    post_rollback: list[Callable[..., Any]] = field(default_factory=list)


@dataclass
class Seams:
    """The world as the driver sees it (production: Pulumi + boto3; sandbox: moto; tests: fakes)."""

    backend: StackBackend
    #: The CloudWatch metrics provider (production: over the driver's AWS session), used by every
    #: service whose ``analysis.metrics`` is ``cloudwatch``; another provider is built per service
    #: from its settings (:func:`rfs_deploy.metrics.provider_for`).
    metrics: MetricsProvider
    traffic: TrafficReader
    fleet: FleetControl
    alarms: AlarmReader
    clock: Clock
    #: An httpx transport for validation checks (the sandbox answers as the simulated slot would);
    #: None uses the network.
    http_transport: Any = None
    records: RecordStore | None = None
    hooks: Hooks = field(default_factory=Hooks)
    #: Called with every :class:`rfs_deploy.drive.events.Event` (progress display, logs).
    listeners: list[Callable[[Any], None]] = field(default_factory=list)
    #: How the recovery command names the stack (``--stack production``).
    command_prefix: str = "rfs-deploy"
    #: Releases what the seams hold (the sandbox saves its session and stops moto).
    closer: Callable[[], None] | None = None
    #: A request to stop (SIGINT/SIGTERM, ``task.cancel()``) and what to do then; the driver
    #: attaches one for each operation (see :mod:`rfs_deploy.drive.cancel`).
    cancellation: Cancellation | None = None
    #: Seconds of real time a stack update waits while another process holds the stack lock
    #: (0: StackBusy at once). :func:`rfs_deploy.connect.open_seams` sets 900.
    lock_wait: float = 0
    #: Finds a version's AMI by tag (``artifact.lookupTag``); None: lookups are refused.
    images: ImageFinder | None = None
    #: The webhook deliveries the current operation opened (:mod:`rfs_deploy.drive.webhooks`);
    #: the operation flushes them when it ends.
    outbox: list[Delivery] = field(default_factory=list)

    def notify(self, event: Any) -> None:
        """Hand ``event`` to every listener. A listener that fails (a closed terminal, a bug in a
        display) is dropped with a warning instead of stopping a deployment half-way."""
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception as exc:
                self.listeners.remove(listener)
                log.warning("event listener %r removed after it failed: %s", listener, exc)

    def close(self) -> None:
        if self.closer is not None:
            closer, self.closer = self.closer, None
            closer()
