"""Events the runner emits while it works; the progress display and the logs listen to them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    at: float
    deployment_id: str


@dataclass(frozen=True)
class DeploymentStarted(Event):
    """A new deployment begins (``deploy``; not a resume or promote of an open one)."""

    service: str
    version: str
    strategy: str
    total: int
    previous_version: str | None = None


@dataclass(frozen=True)
class StepStarted(Event):
    index: int
    total: int
    kind: str
    description: str


@dataclass(frozen=True)
class StepFinished(Event):
    index: int
    kind: str
    outcome: str
    reason: str


@dataclass(frozen=True)
class Tick(Event):
    """One analysis tick: weights in force and the verdict with its numbers."""

    step: int
    weights: dict[str, int]
    outcome: str
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Note(Event):
    message: str


@dataclass(frozen=True)
class Paused(Note):
    """The deployment holds after plan step ``step`` (a gate, or a step no confirm webhook
    confirmed) until promoted; ``message`` says so in a sentence."""

    step: int
    reason: str
    by: str


@dataclass(frozen=True)
class Promoted(Event):
    """``promote`` continues the deployment paused after plan step ``step``."""

    step: int
    full: bool
    skip_analysis: bool
    by: str


@dataclass(frozen=True)
class RollbackStarted(Event):
    reason: str
    target_version: int | None


@dataclass(frozen=True)
class DeploymentFinished(Event):
    status: str
    reason: str


#: The longest a wait inside a step stays silent: the runner sleeps in chunks of at most this
#: many seconds and reports each one that leaves more to wait (CI kills jobs that print nothing).
HEARTBEAT_SECONDS = 30


@dataclass(frozen=True)
class Heartbeat(Event):
    """Still waiting inside step ``step``: ``waited`` seconds so far of ``total`` (None: until a
    condition holds, e.g. targets healthy)."""

    step: int
    label: str
    waited: float
    total: float | None = None
