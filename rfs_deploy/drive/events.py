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
    service: str
    version: str
    strategy: str
    steps: tuple[str, ...]


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
class RollbackStarted(Event):
    reason: str
    target_version: int | None


@dataclass(frozen=True)
class DeploymentFinished(Event):
    status: str
    reason: str
